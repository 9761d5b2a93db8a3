import Foundation
import Generation
@testable import Mamba2Server
import Tensors
import Testing

/// `mamba2 serve` end to end: a real server on a loopback port, spoken to over HTTP.
@Suite(.serialized)
struct ServerTests {
    static let prompts = [
        "def fibonacci(n):", "import os\n", "class Stack:\n    def __init__(self):", "for i in range(10):",
        "def read_file(path):\n    with open(path) as f:", "x = [", "# Sort a list\n", "def main():\n    args =",
    ]

    @Test func anSSMStateDTypeOtherThanF32OrBF16IsRefused() throws {
        let options = ServerOptions(port: 0, modelID: "mamba2-pycode", ssmStateDType: .float16)
        #expect(throws: GenerationError.invalidSetting(name: "ssmStateDType", reason: "must be F32 or BF16, got F16")) {
            try CompletionServer(generator: try sharedGenerator(), hasChatTemplate: false, options: options)
        }
    }

    @Test func aFolderSettingThePackageCannotHonourIsRefusedAtStart() throws {
        let shared = try sharedGenerator()
        var defaults = shared.defaults
        defaults.unsupported = [.init(file: "generation_config.json", name: "num_beams", value: "4")]
        let generator = Generator(model: shared.model, tokenizer: shared.tokenizer, defaults: defaults)
        #expect(throws: GenerationError.unsupportedSetting(file: "generation_config.json", name: "num_beams", value: "4")) {
            try CompletionServer(generator: generator, hasChatTemplate: false, options: ServerOptions(port: 0, modelID: "mamba2-pycode"))
        }
    }

    @Test func healthModelsAndUnknownRoutes() async throws {
        let running = try await RunningServer.start()
        let health = try await HTTP.send("GET", "/health", port: running.port)
        #expect(health.status == 200)
        #expect(try health.json()["status"] as? String == "ok")
        let models = try await HTTP.send("GET", "/v1/models", port: running.port)
        let data = try #require(try models.json()["data"] as? [[String: Any]])
        #expect(data.map { $0["id"] as? String } == ["mamba2-pycode"])
        let model = try await HTTP.send("GET", "/v1/models/mamba2-pycode", port: running.port)
        #expect(try model.json()["id"] as? String == "mamba2-pycode")
        #expect(try await HTTP.send("GET", "/v1/models/gpt-4", port: running.port).status == 404)
        let missing = try await HTTP.send("GET", "/v1/nothing", port: running.port)
        #expect(missing.status == 404)
        #expect(try missing.error()["type"] as? String == "invalid_request_error")
        try await running.stop()
    }

    @Test func completionEqualsSoloGreedyAndStreamConcatenatesToIt() async throws {
        let running = try await RunningServer.start()
        let prompt = Self.prompts[0]
        let solo = try soloGreedyText(prompt, maxTokens: 40)
        let body: [String: Any] = ["prompt": prompt, "max_tokens": 40, "temperature": 0, "model": "mamba2-pycode"]
        let reply = try await HTTP.post("/v1/completions", port: running.port, json: try jsonString(body))
        #expect(reply.status == 200)
        let object = try reply.json()
        #expect(object["object"] as? String == "text_completion")
        let choice = try #require((object["choices"] as? [[String: Any]])?.first)
        #expect(choice["text"] as? String == solo.text)
        #expect(choice["finish_reason"] as? String == solo.finish.rawValue)
        let usage = try #require(object["usage"] as? [String: Int])
        #expect(usage["completion_tokens"] == solo.tokens)
        #expect(usage["prompt_tokens"] == (try sharedGenerator().tokenizer!.encode(prompt).ids.count))
        #expect(usage["total_tokens"] == usage["prompt_tokens"]! + usage["completion_tokens"]!)

        var streamed = body
        streamed["stream"] = true
        streamed["stream_options"] = ["include_usage": true]
        let stream = try await HTTP.post("/v1/completions", port: running.port, json: try jsonString(streamed))
        #expect(stream.status == 200)
        #expect(stream.headers["content-type"] == "text/event-stream")
        let events = stream.events
        #expect(events.last == "[DONE]")
        let chunks = try events.dropLast().map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        let pieces = chunks.compactMap { ($0["choices"] as? [[String: Any]])?.first }
        #expect(pieces.count > 2)
        #expect(pieces.map { $0["text"] as? String ?? "" }.joined() == solo.text)
        #expect(pieces.dropLast().allSatisfy { $0["finish_reason"] is NSNull })
        #expect(pieces.last?["finish_reason"] as? String == solo.finish.rawValue)
        #expect(chunks.last?["usage"] as? [String: Int] == usage)
        try await running.stop()
    }

    @Test func concurrentRequestsDecodeTogetherAndEachEqualsItsSoloOutput() async throws {
        let running = try await RunningServer.start(maxBatch: 8)
        let budgets = [24, 40, 16, 33, 40, 8, 29, 40]
        let replies = try await withThrowingTaskGroup(of: (Int, HTTPReply).self) { group in
            for (index, prompt) in Self.prompts.enumerated() {
                let body = try jsonString(["prompt": prompt, "max_tokens": budgets[index], "temperature": 0, "stream": index.isMultiple(of: 2)])
                group.addTask { (index, try await HTTP.post("/v1/completions", port: running.port, json: body)) }
            }
            var replies = [HTTPReply?](repeating: nil, count: Self.prompts.count)
            for try await (index, reply) in group { replies[index] = reply }
            return replies.map { $0! }
        }
        for (index, reply) in replies.enumerated() {
            #expect(reply.status == 200)
            let solo = try soloGreedyText(Self.prompts[index], maxTokens: budgets[index])
            let text: String
            if index.isMultiple(of: 2) {
                text = try reply.events.dropLast().map { event in
                    let chunk = try JSONSerialization.jsonObject(with: Data(event.utf8)) as? [String: Any]
                    return ((chunk?["choices"] as? [[String: Any]])?.first?["text"] as? String) ?? ""
                }.joined()
            } else {
                text = try #require((try reply.json()["choices"] as? [[String: Any]])?.first?["text"] as? String)
            }
            #expect(text == solo.text, "request \(index)")
        }
        // They shared batched steps: far fewer steps than tokens, and several rows at once.
        let statistics = running.server.batcher.statistics
        #expect(statistics.largestBatch >= 4)
        #expect(statistics.steps < budgets.reduce(0, +) / 2)
        try await running.stop()
    }

    @Test func severalPromptsInOneRequest() async throws {
        let running = try await RunningServer.start()
        let prompts = Array(Self.prompts.prefix(3))
        let reply = try await HTTP.post("/v1/completions", port: running.port, json: try jsonString(["prompt": prompts, "max_tokens": 12, "temperature": 0]))
        let choices = try #require(try reply.json()["choices"] as? [[String: Any]])
        #expect(choices.map { $0["index"] as? Int } == [0, 1, 2])
        for (index, prompt) in prompts.enumerated() {
            #expect(choices[index]["text"] as? String == (try soloGreedyText(prompt, maxTokens: 12).text))
        }
        // Token ids work as prompts too.
        let ids = try sharedGenerator().tokenizer!.encode(prompts[0]).ids
        let byIDs = try await HTTP.post("/v1/completions", port: running.port, json: try jsonString(["prompt": ids, "max_tokens": 12, "temperature": 0]))
        #expect((try byIDs.json()["choices"] as? [[String: Any]])?.first?["text"] as? String == choices[0]["text"] as? String)
        try await running.stop()
    }

    @Test func stopStringsEndTheTextBeforeThem() async throws {
        let running = try await RunningServer.start()
        let prompt = Self.prompts[0]
        let solo = try soloGreedyText(prompt, maxTokens: 40)
        // A stop string from the middle of the greedy text.
        let characters = Array(solo.text)
        let stop = String(characters[(characters.count / 2)..<(characters.count / 2 + 3)])
        let expected = String(solo.text[..<solo.text.range(of: stop)!.lowerBound])
        for stream in [false, true] {
            let body = try jsonString(["prompt": prompt, "max_tokens": 40, "temperature": 0, "stop": [stop, "never appears ~~~"], "stream": stream])
            let reply = try await HTTP.post("/v1/completions", port: running.port, json: body)
            let choices: [[String: Any]]
            if stream {
                choices = try reply.events.dropLast().compactMap { event in
                    (try JSONSerialization.jsonObject(with: Data(event.utf8)) as? [String: Any])?["choices"] as? [[String: Any]]
                }.flatMap { $0 }
            } else {
                choices = try #require(try reply.json()["choices"] as? [[String: Any]])
            }
            #expect(choices.map { $0["text"] as? String ?? "" }.joined() == expected, "stream: \(stream)")
            #expect(choices.last?["finish_reason"] as? String == "stop")
        }
        try await running.stop()
    }

    @Test func aTemperatureTooSmallToDivideByIsGreedy() async throws {
        let running = try await RunningServer.start()
        let reply = try await HTTP.post("/v1/completions", port: running.port, json: "{\"prompt\": \"import os\\n\", \"max_tokens\": 12, \"temperature\": 1e-40}")
        let text = (try reply.json()["choices"] as? [[String: Any]])?.first?["text"] as? String
        #expect(text == (try soloGreedyText("import os\n", maxTokens: 12).text))
        try await running.stop()
    }

    @Test func seededSamplingIsReproducible() async throws {
        let running = try await RunningServer.start()
        let body = try jsonString(["prompt": Self.prompts[1], "max_tokens": 24, "temperature": 0.9, "top_p": 0.95, "seed": 7])
        let first = try await HTTP.post("/v1/completions", port: running.port, json: body)
        let second = try await HTTP.post("/v1/completions", port: running.port, json: body)
        let text = { (reply: HTTPReply) in (try reply.json()["choices"] as? [[String: Any]])?.first?["text"] as? String }
        #expect(try text(first) != nil)
        #expect(try text(first) == text(second))
        try await running.stop()
    }

    @Test func clientThatHangsUpMidStreamFreesItsSlot() async throws {
        let running = try await RunningServer.start(maxBatch: 1, maxQueue: 0)
        let body = try jsonString(["prompt": Self.prompts[0], "max_tokens": 4096, "temperature": 0, "stream": true])
        let received = try await HTTP.postAndHangUp("/v1/completions", port: running.port, json: body, after: 600)
        #expect(received.contains("data: {") && !received.contains("\"finish_reason\":\""))
        // Without the hang-up this sequence would run for 4096 tokens (its greedy text has no
        // EOS that early: the solo run below).
        try await waitUntil("the slot is free", seconds: 10) { running.server.batcher.load.running == 0 }
        #expect(running.server.batcher.statistics.steps < 3000)
        #expect(try soloGreedyText(Self.prompts[0], maxTokens: 200).finish == .length)
        // The only slot is free again.
        let next = try await HTTP.post("/v1/completions", port: running.port, json: try jsonString(["prompt": "x", "max_tokens": 4]))
        #expect(next.status == 200)
        try await running.stop()
    }

    @Test func clientThatHangsUpBeforeAPlainAnswerFreesItsSlot() async throws {
        let running = try await RunningServer.start(maxBatch: 1, maxQueue: 0)
        let body = try jsonString(["prompt": Self.prompts[0], "max_tokens": 4096, "temperature": 0])
        let hangUp = Flag()
        let client = Task { try await HTTP.postAndHangUp("/v1/completions", port: running.port, json: body, when: hangUp) }
        try await waitUntil("the request runs") { running.server.batcher.load.running == 1 }
        hangUp.raise()
        #expect(try await client.value.isEmpty)
        try await waitUntil("the slot is free", seconds: 10) { running.server.batcher.load.running == 0 }
        #expect(running.server.batcher.statistics.steps < 3000)
        try await running.stop()
    }

    @Test func aFullQueueAnswers429() async throws {
        let running = try await RunningServer.start(maxBatch: 1, maxQueue: 1)
        let long = try jsonString(["prompt": Self.prompts[0], "max_tokens": 4096, "temperature": 0, "stream": true])
        // One request decodes, one waits; both stay connected until the 429 has been seen.
        let done = Flag()
        let first = Task { try await HTTP.postAndHangUp("/v1/completions", port: running.port, json: long, when: done) }
        try await waitUntil("the first request runs") { running.server.batcher.load.running == 1 }
        let second = Task { try await HTTP.postAndHangUp("/v1/completions", port: running.port, json: long, when: done) }
        try await waitUntil("the second request waits") { running.server.batcher.load.waiting == 1 }
        let refused = try await HTTP.post("/v1/completions", port: running.port, json: try jsonString(["prompt": "x"]))
        done.raise()
        #expect(refused.status == 429)
        #expect(try refused.error()["code"] as? String == "queue_full")
        #expect(refused.headers["retry-after"] == "1")
        _ = try await first.value
        _ = try await second.value
        // More prompts than could ever run or wait together is the request's fault, not a 429.
        let tooMany = try await HTTP.post("/v1/completions", port: running.port, json: try jsonString(["prompt": ["a", "b", "c"]]))
        #expect(tooMany.status == 400)
        #expect((try tooMany.error()["message"] as? String)?.contains("can never be admitted together") == true)
        try await running.stop()
    }

    @Test func malformedRequestsGet400WithAnOpenAIErrorBody() async throws {
        let running = try await RunningServer.start(limits: RequestLimits(maxPromptTokens: 16, maxNewTokens: 64, maxPrompts: 2))
        let cases: [(body: String, status: Int, param: String?, message: String)] = [
            ("{\"prompt\": \"x\"", 400, nil, "not valid JSON"),
            ("[1, 2]", 400, nil, "must be a JSON object"),
            ("{}", 400, "prompt", "'prompt' is required"),
            ("{\"prompt\": 5}", 400, "prompt", "'prompt' must be a string"),
            ("{\"prompt\": []}", 400, "prompt", "empty array"),
            ("{\"prompt\": [\"a\", 3]}", 400, "prompt", "'prompt' must be"),
            ("{\"prompt\": [\"a\", \"b\", \"c\"]}", 400, "prompt", "at most 2 prompts"),
            ("{\"prompt\": \"\"}", 400, "prompt", "has no tokens"),
            ("{\"prompt\": [1, 999999]}", 400, "prompt", "outside the vocabulary"),
            ("{\"prompt\": [1, -3]}", 400, "prompt", "outside the vocabulary"),
            ("{\"prompt\": [1.5]}", 400, "prompt", "'prompt' must be"),
            ("{\"prompt\": \"" + String(repeating: "def f(x): return x\\n", count: 20) + "\"}", 400, "prompt", "more than this server's limit of 16"),
            ("{\"prompt\": \"x\", \"max_tokens\": \"ten\"}", 400, "max_tokens", "must be an integer"),
            ("{\"prompt\": \"x\", \"max_tokens\": -5}", 400, "max_tokens", "between 1 and 64"),
            ("{\"prompt\": \"x\", \"max_tokens\": 0}", 400, "max_tokens", "between 1 and 64"),
            ("{\"prompt\": \"x\", \"max_tokens\": 100000000000}", 400, "max_tokens", "between 1 and 64"),
            ("{\"prompt\": \"x\", \"max_tokens\": 1e300}", 400, "max_tokens", "must be an integer"),
            ("{\"prompt\": \"x\", \"max_tokens\": 2.5}", 400, "max_tokens", "must be an integer"),
            ("{\"prompt\": \"x\", \"temperature\": \"hot\"}", 400, "temperature", "must be a number"),
            ("{\"prompt\": \"x\", \"temperature\": 3}", 400, "temperature", "between 0 and 2"),
            ("{\"prompt\": \"x\", \"top_p\": 0}", 400, "top_p", "greater than 0"),
            ("{\"prompt\": \"x\", \"top_p\": true}", 400, "top_p", "must be a number"),
            ("{\"prompt\": \"x\", \"stream\": 1}", 400, "stream", "true or false"),
            ("{\"prompt\": \"x\", \"stream_options\": {\"include_usage\": true}}", 400, "stream_options", "only allowed with"),
            ("{\"prompt\": \"x\", \"stop\": 3}", 400, "stop", "a string or an array"),
            ("{\"prompt\": \"x\", \"stop\": [\"\"]}", 400, "stop", "must not be empty"),
            ("{\"prompt\": \"x\", \"stop\": [\"a\", \"b\", \"c\", \"d\", \"e\"]}", 400, "stop", "at most 4"),
            ("{\"prompt\": \"x\", \"seed\": -1}", 400, "seed", "between 0"),
            ("{\"prompt\": \"x\", \"n\": 2}", 400, "n", "only n = 1"),
            ("{\"prompt\": \"x\", \"echo\": true}", 400, "echo", "not supported"),
            ("{\"prompt\": \"x\", \"logprobs\": 3}", 400, "logprobs", "not supported"),
            ("{\"prompt\": \"x\", \"frequency_penalty\": 0.5}", 400, "frequency_penalty", "not supported"),
            ("{\"prompt\": \"x\", \"temprature\": 0.5}", 400, "temprature", "unknown field 'temprature'"),
            ("{\"prompt\": \"x\", \"model\": \"gpt-4\"}", 404, "model", "does not exist"),
            ("{\"prompt\": \"x\", \"stop\": \"" + String(repeating: "s", count: 1025) + "\"}", 400, "stop", "at most 1024 bytes"),
            ("{\"prompt\": \"" + String(repeating: "a", count: 16 * 64 + 1) + "\"}", 400, "prompt", "bytes, more than 1024"),
            (String(repeating: "[", count: 500) + String(repeating: "]", count: 500), 400, nil, "nests deeper than 32 levels"),
            ("{\"prompt\": \"x\", \"user\": " + String(repeating: "{\"a\": ", count: 40) + "1" + String(repeating: "}", count: 40) + "}", 400, nil, "nests deeper"),
        ]
        for test in cases {
            let reply = try await HTTP.post("/v1/completions", port: running.port, json: test.body)
            #expect(reply.status == test.status, "\(test.body)")
            let error = try reply.error()
            #expect((error["message"] as? String)?.contains(test.message) == true, "\(test.body): \(error["message"] ?? "")")
            #expect(error["param"] as? String == test.param, "\(test.body)")
        }
        // Neutral values of unsupported fields, and nulls, are accepted.
        let accepted = "{\"prompt\": \"x\", \"max_tokens\": 2, \"echo\": false, \"logprobs\": null, \"n\": 1, \"best_of\": 1, \"frequency_penalty\": 0, \"user\": \"u\", \"temperature\": null}"
        #expect(try await HTTP.post("/v1/completions", port: running.port, json: accepted).status == 200)

        let chat = try await HTTP.post("/v1/chat/completions", port: running.port, json: "{\"messages\": []}")
        #expect(chat.status == 400)
        #expect((try chat.error()["message"] as? String)?.contains("no chat template") == true)
        let tooLarge = try await HTTP.post("/v1/completions", port: running.port, json: "{\"prompt\": \"" + String(repeating: "a", count: 5 << 20) + "\"}")
        #expect(tooLarge.status == 413)
        let garbage = try await HTTP.raw(Array("NOT HTTP AT ALL\r\n\r\n".utf8), port: running.port)
        #expect(garbage.status == 400)
        // After all that, the server is still serving.
        #expect(try await HTTP.send("GET", "/health", port: running.port).status == 200)
        try await running.stop()
    }

    @Test func gracefulShutdownFinishesRunningStreamsAndRefusesNewWork() async throws {
        let running = try await RunningServer.start()
        let body = try jsonString(["prompt": Self.prompts[0], "max_tokens": 200, "temperature": 0, "stream": true])
        let stream = Task { try await HTTP.post("/v1/completions", port: running.port, json: body) }
        try await waitUntil("the request runs") { running.server.batcher.load.running == 1 }
        let shutdown = Task { await running.server.shutdown() }
        try await waitUntil("the shutdown begins") { running.server.isShuttingDown }
        let refused = try await HTTP.post("/v1/completions", port: running.port, json: try jsonString(["prompt": "x"]))
        #expect(refused.status == 503)
        let reply = try await stream.value
        #expect(reply.events.last == "[DONE]")
        let solo = try soloGreedyText(Self.prompts[0], maxTokens: 200)
        let text = try reply.events.dropLast().map { event in
            ((try JSONSerialization.jsonObject(with: Data(event.utf8)) as? [String: Any])?["choices"] as? [[String: Any]])?.first?["text"] as? String ?? ""
        }.joined()
        #expect(text == solo.text)
        await shutdown.value
        try await running.waitForRun()
        await #expect(throws: ClientError.self) { try await HTTP.send("GET", "/health", port: running.port) }
    }

    @Test func aShutdownGracePeriodEndsStreamsThatRunOver() async throws {
        let running = try await RunningServer.start(shutdownGrace: 0.2)
        let body = try jsonString(["prompt": Self.prompts[0], "max_tokens": 4096, "temperature": 0, "stream": true])
        let stream = Task { try await HTTP.post("/v1/completions", port: running.port, json: body) }
        try await waitUntil("the request runs") { running.server.batcher.load.running == 1 }
        try await running.stop()
        let reply = try await stream.value
        let last = try #require(reply.events.last)
        #expect(last.contains("\"code\":\"shutting_down\""))
    }
}
