import EcoWattProtocol
import EcoWattTestSupport
import Foundation
import Testing

@Suite struct JSONParserTests {
    @Test func parsesTheFirmwareShapes() throws {
        let value = try JSONParser.parse(Array(#" {"a":[1,-2,3.5,1e3,true,false,null],"b":{"c":"d\"\\\/\n\u00e9\ud83d\ude00"}} "#.utf8))
        #expect(value["a"] == .array([.int(1), .int(-2), .double(3.5), .double(1000), .bool(true), .bool(false), .null]))
        #expect(value["b"]?["c"]?.stringValue == "d\"\\/\né😀")
        #expect(try JSONParser.parse(Array("4294967295".utf8)).intValue == 4_294_967_295)
        #expect(try JSONParser.parse(Array("0.833333313".utf8)).doubleValue == 0.833333313)
        #expect(try JSONParser.parse(Array("99999999999999999999".utf8)).doubleValue == 1e20)
    }

    @Test(arguments: [
        "", "{", "{\"a\":1,}", "[1,]", "{\"a\" 1}", "01", "1.", "-", "1e", "\"abc", "\"a\u{01}\"", "tru", "nul",
        "{\"a\":1}x", "\"\\x\"", "\"\\ud800\"", "\"\\udc00\"", "[1 2]", "{1:2}", "'a'",
    ])
    func rejectsInvalidDocuments(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(Array(text.utf8)) }
    }

    @Test func rejectsInvalidUTF8AndDeepNesting() {
        #expect(throws: JSONParseError.self) { try JSONParser.parse([0x22, 0xC3, 0x28, 0x22]) }
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(Array(deep.utf8)) }
        let fine = String(repeating: "[", count: 60) + String(repeating: "]", count: 60)
        #expect(throws: Never.self) { try JSONParser.parse(Array(fine.utf8)) }
    }

    @Test func agreesWithFoundationOnTheCorpus() throws {
        for line in try Conformance.lines("uploads.jsonl").prefix(60) {
            let body = line["body"] as! String
            let ours = try JSONParser.parse(Array(body.utf8))
            let envelope = try #require(JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
            #expect(ours["nonce"]?.intValue == (envelope["nonce"] as? NSNumber)?.int64Value)
            #expect(ours["payload"]?.stringValue == envelope["payload"] as? String)
            // Serializing what we parsed gives back the device's compact bytes.
            let inner = try #require(Data(base64Encoded: envelope["payload"] as! String))
            let parsed = try JSONParser.parse(Array(inner))
            #expect(parsed["compressed_data"]?.arrayValue?.count == (line["expected"] as! [String: Any])["packets"].map { ($0 as! [Any]).count })
            #expect(parsed.serialized.count <= inner.count)
        }
    }
}

@Suite struct LenientJSONTests {
    @Test func nonFiniteTokensOnlyWhenAllowed() throws {
        let text = Array(#"{"a":nan,"b":-inf,"c":inf,"d":-nan,"e":null,"f":"nan"}"#.utf8)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(text) }
        let value = try JSONParser.parse(text, allowNonFinite: true)
        #expect(value["a"] == .null)
        #expect(value["b"] == .null)
        #expect(value["c"] == .null)
        #expect(value["d"] == .null)
        #expect(value["f"]?.stringValue == "nan")
        #expect(throws: JSONParseError.self) { try JSONParser.parse(Array("nope".utf8), allowNonFinite: true) }
    }
}

@Suite struct JSONSerializerTests {
    @Test func serializedTextEscapesWhatJSONRequiresAndParsesBackToTheSameValue() throws {
        let text = "quote \" backslash \\ newline \n tab \t return \r bell \u{07} é 😀 end"
        let value = JSONValue.object([("k\"ey", .string(text)), ("n", .int(-42)), ("x", .double(2.5)), ("a", .array([.null, .bool(true)]))])
        let serialized = value.serialized
        #expect(serialized.contains(#"\""#) && serialized.contains(#"\\"#) && serialized.contains(#"\n"#) && serialized.contains(#"\u0007"#))
        #expect(!serialized.utf8.contains { $0 < 0x20 })
        #expect(try JSONParser.parse(value.serializedBytes) == value)
        #expect(String(decoding: value.serializedBytes, as: UTF8.self) == serialized)
    }
}
