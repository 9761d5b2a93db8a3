import ArgumentParser

@main
struct Mamba2Command: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mamba2",
        abstract: "Mamba-2 language models from Hugging Face checkpoint folders, natively in Swift.",
        subcommands: [Forward.self])
}

/// Errors of the command line itself (arguments and output files), one line each.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Parses `1,2,3` into integers, naming the option on failure.
func parseIntegerList(_ text: String, option: String) throws -> [Int] {
    let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
    let values = parts.compactMap { Int($0) }
    guard !parts.isEmpty, values.count == parts.count else {
        throw CLIError("\(option) '\(text)' must be a comma-separated list of integers")
    }
    return values
}
