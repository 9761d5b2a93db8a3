import Foundation

private let prefix = "swift-mamba2-tests-"

/// The folder tests write their files in: one per test process under the system's temporary
/// directory, removed when the process exits, so test runs leave nothing behind. Folders left by
/// test processes that died first (a crash, a signal) are removed when the next run starts.
public let scratchFolder: URL = {
    let temporary = FileManager.default.temporaryDirectory
    removeFoldersOfDeadProcesses(in: temporary)
    let url = temporary.appendingPathComponent("\(prefix)\(getpid())-\(UUID().uuidString.prefix(8))")
    do {
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    } catch {
        fatalError("tests cannot create their scratch folder \(url.path): \(error)")
    }
    atexit(removeScratchFolder)
    return url
}()

private func removeScratchFolder() {
    try? FileManager.default.removeItem(at: scratchFolder)
}

/// Removes `swift-mamba2-tests-<pid>-…` folders whose process no longer exists.
private func removeFoldersOfDeadProcesses(in temporary: URL) {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: temporary.path)) ?? []
    for name in names where name.hasPrefix(prefix) {
        guard let pid = Int32(name.dropFirst(prefix.count).prefix { $0 != "-" }), pid > 0 else { continue }
        if kill(pid, 0) != 0 && errno == ESRCH {
            try? FileManager.default.removeItem(at: temporary.appendingPathComponent(name))
        }
    }
}

/// A fresh path in `scratchFolder` ending in `name`; nothing is created there.
public func scratchURL(_ name: String) -> URL {
    scratchFolder.appendingPathComponent("\(UUID().uuidString)-\(name)")
}
