import CompressNIO
import Crypto
import EcoWattProtocol
import Foundation
import HTTPTypes
import Hummingbird

/// The web dashboard (issue 20): a page and its script and style, embedded in the binary, served beside `/api/v1` on
/// the operator listener (same origin, so the session cookie and the CSRF token work). The page fetches everything
/// else from the operator API with the session; the server enforces the roles there.
struct DashboardRoutes {
    /// An asset with its gzip form, compressed once at start (Chart.js: 201 KB, 68 KB gzipped; app.js 14 KB, 4 KB),
    /// kept only when it saves at least a tenth.
    struct Asset: Sendable {
        let bytes: ByteBuffer
        let gzipped: ByteBuffer?
        let contentType: String
        let etag: String

        init(_ bytes: [UInt8], _ contentType: String) {
            self.bytes = ByteBuffer(bytes: bytes)
            self.contentType = contentType
            etag = "\"" + HexCoding.encode(Array(SHA256.hash(data: bytes).prefix(8))) + "\""
            var input = self.bytes
            let compressed = try? input.compress(with: .gzip())
            gzipped = compressed.flatMap { $0.readableBytes * 10 <= bytes.count * 9 ? $0 : nil }
        }
    }

    static let assets: [String: Asset] = [
        "/": Asset(PackageResources.index_html, "text/html; charset=utf-8"),
        "/assets/app.js": Asset(PackageResources.app_js, "text/javascript; charset=utf-8"),
        "/assets/style.css": Asset(PackageResources.style_css, "text/css; charset=utf-8"),
        "/assets/device-chart.js": Asset(PackageResources.device_chart_js, "text/javascript; charset=utf-8"),
        "/assets/pages.js": Asset(PackageResources.pages_js, "text/javascript; charset=utf-8"),
        "/assets/device-sections.js": Asset(PackageResources.device_sections_js, "text/javascript; charset=utf-8"),
        "/assets/fleet-pages.js": Asset(PackageResources.fleet_pages_js, "text/javascript; charset=utf-8"),
        "/assets/rollouts.js": Asset(PackageResources.rollouts_js, "text/javascript; charset=utf-8"),
    ]

    /// No inline script or style, nothing from elsewhere, never in a frame.
    static let securityHeaders: [(HTTPField.Name, String)] = [
        (
            HTTPField.Name("Content-Security-Policy")!,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
                + "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        ),
        (HTTPField.Name("X-Content-Type-Options")!, "nosniff"),
        (HTTPField.Name("X-Frame-Options")!, "DENY"),
        (HTTPField.Name("Referrer-Policy")!, "no-referrer"),
    ]

    /// Chart.js from `dashboard_chartjs_file`, read once; without it a comment, so that the page loads without an
    /// error and shows tables.
    let chartJS: Asset

    init(chartJSFile: String) {
        let bytes = FileManager.default.contents(atPath: chartJSFile).map { Array($0) }
        chartJS = Asset(bytes ?? Array("/* Chart.js not installed (dashboard_chartjs_file): tables only */\n".utf8), "text/javascript; charset=utf-8")
    }

    func register(on router: Router<EcoWattRequestContext>) {
        for (path, asset) in Self.assets {
            router.get(RouterPath(path)) { request, _ in Self.response(asset, request) }
        }
        let chartJS = chartJS
        router.get("/assets/vendor/chart.min.js") { request, _ in Self.response(chartJS, request) }
    }

    /// The asset, gzipped when the browser accepts it, or 304 when the browser has it (`no-cache`: revalidated on
    /// every load, so a new release is seen).
    static func response(_ asset: Asset, _ request: Request) -> Response {
        let gzipped = acceptsGzip(request.headers[values: .acceptEncoding]) ? asset.gzipped : nil
        // Each representation has its own tag (a cache must not answer a request without gzip with the gzip bytes).
        let etag = gzipped == nil ? asset.etag : String(asset.etag.dropLast()) + "-gz\""
        var headers = HTTPFields()
        for (name, value) in securityHeaders { headers[name] = value }
        headers[.eTag] = etag
        headers[.cacheControl] = "no-cache"
        headers[.vary] = "Accept-Encoding"
        if request.headers[.ifNoneMatch] == etag { return Response(status: .notModified, headers: headers) }
        headers[.contentType] = asset.contentType
        if gzipped != nil { headers[.contentEncoding] = "gzip" }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: gzipped ?? asset.bytes))
    }

    /// Whether `Accept-Encoding` accepts gzip (listed, or `*`, with a weight above 0).
    static func acceptsGzip(_ values: [String]) -> Bool {
        values.flatMap { $0.split(separator: ",") }.contains { item in
            let parts = item.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            guard parts.first == "gzip" || parts.first == "*" else { return false }
            let weight = parts.dropFirst().first { $0.hasPrefix("q=") }.flatMap { Double($0.dropFirst(2)) } ?? 1
            return weight > 0
        }
    }
}
