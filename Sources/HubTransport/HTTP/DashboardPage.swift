import Foundation

/// The built-in dashboard page served at `/`: one self-contained file (no CDN), shipped
/// inside the binary's resources.
enum DashboardPage {
    static let html: String = {
        guard let url = Bundle.module.url(forResource: "index", withExtension: "html"),
            let text = try? String(contentsOf: url, encoding: .utf8)
        else { return "<!doctype html><p>The dashboard page is missing from this build.</p>" }
        return text
    }()
}
