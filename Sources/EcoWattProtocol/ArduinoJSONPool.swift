/// Pool bytes ArduinoJson 6.21 needs on the ESP32 to parse a document (spec §0.5): 16 bytes per object member or array
/// element, plus every distinct string (keys and values) copied once with its terminator.
///
/// The firmware parses each reply into a fixed pool (512 bytes for a command poll, 4096 for config, 2048 for an OTA
/// check, 3072 for a chunk); a reply that needs more fails with `NoMemory` and is treated as garbage.
public enum ArduinoJSONPool {
    /// Pool capacities of the firmware's replies (spec §0.5).
    public static let commandPoll = 512
    public static let config = 4096
    public static let otaCheck = 2048
    public static let otaChunk = 3072
    public static let otaInitiate = 512

    /// Bytes `value` occupies in the device's pool.
    public static func bytes(for value: JSONValue) -> Int {
        var strings = Set<String>()
        func walk(_ value: JSONValue) -> Int {
            switch value {
            case .object(let members):
                return members.reduce(0) { total, member in
                    strings.insert(member.0)
                    return total + 16 + walk(member.1)
                }
            case .array(let values): return values.reduce(0) { $0 + 16 + walk($1) }
            case .string(let text):
                strings.insert(text)
                return 0
            default: return 0
            }
        }
        let slots = walk(value)
        return slots + strings.reduce(0) { $0 + $1.utf8.count + 1 }
    }

    /// Bytes the JSON text `text` occupies in the device's pool.
    public static func bytes(_ text: String) throws(JSONParseError) -> Int {
        bytes(for: try JSONParser.parse(Array(text.utf8)))
    }
}
