import Foundation

/// The folder tests write their files in: one per test process under the system's temporary
/// directory, removed when the process exits, so test runs leave nothing behind.
public let scratchFolder: URL = {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("swift-mamba2-tests-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString.prefix(8))")
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    atexit(removeScratchFolder)
    return url
}()

private func removeScratchFolder() {
    try? FileManager.default.removeItem(at: scratchFolder)
}

/// A fresh path in `scratchFolder` ending in `name`; nothing is created there.
public func scratchURL(_ name: String) -> URL {
    scratchFolder.appendingPathComponent("\(UUID().uuidString)-\(name)")
}
