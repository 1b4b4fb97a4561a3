import Crypto
import EcoWattProtocol
import Foundation
import HTTPTypes
import Hummingbird

/// The web dashboard (issue 20): a page and its script and style, embedded in the binary, served beside `/api/v1` on
/// the operator listener (same origin, so the session cookie and the CSRF token work). The page fetches everything
/// else from the operator API with the session; the server enforces the roles there.
struct DashboardRoutes {
    struct Asset: Sendable {
        let bytes: [UInt8]
        let contentType: String
        let etag: String

        init(_ bytes: [UInt8], _ contentType: String) {
            self.bytes = bytes
            self.contentType = contentType
            etag = "\"" + HexCoding.encode(Array(SHA256.hash(data: bytes).prefix(8))) + "\""
        }
    }

    static let assets: [String: Asset] = [
        "/": Asset(PackageResources.index_html, "text/html; charset=utf-8"),
        "/assets/app.js": Asset(PackageResources.app_js, "text/javascript; charset=utf-8"),
        "/assets/style.css": Asset(PackageResources.style_css, "text/css; charset=utf-8"),
        "/assets/device-chart.js": Asset(PackageResources.device_chart_js, "text/javascript; charset=utf-8"),
        "/assets/pages.js": Asset(PackageResources.pages_js, "text/javascript; charset=utf-8"),
        "/assets/device-sections.js": Asset(PackageResources.device_sections_js, "text/javascript; charset=utf-8"),
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

    /// The asset, or 304 when the browser has it (`no-cache`: revalidated on every load, so a new release is seen).
    static func response(_ asset: Asset, _ request: Request) -> Response {
        var headers = HTTPFields()
        for (name, value) in securityHeaders { headers[name] = value }
        headers[.eTag] = asset.etag
        headers[.cacheControl] = "no-cache"
        if request.headers[.ifNoneMatch] == asset.etag { return Response(status: .notModified, headers: headers) }
        headers[.contentType] = asset.contentType
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: asset.bytes)))
    }
}
