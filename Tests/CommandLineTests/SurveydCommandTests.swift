import Foundation
import Postgres
import TestSupport
import Testing

/// `surveyd` as an operator runs it: migrate a fresh database, create a company, issue
/// and revoke tokens; each connection named for pg_stat_activity.
@Suite struct SurveydCommandTests {
    /// The `surveyd` binary SwiftPM built next to the test bundle.
    static var executable: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("surveyd")
    }

    struct Output {
        var status: Int32
        var standardOutput: String
        var standardError: String
    }

    func run(_ arguments: [String], environment: [String: String]) throws -> Output {
        let process = Process()
        process.executableURL = Self.executable
        process.arguments = arguments
        var merged = ProcessInfo.processInfo.environment
        merged["LOG_LEVEL"] = "warning"
        for (key, value) in environment { merged[key] = value }
        process.environment = merged
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Output(
            status: process.terminationStatus, standardOutput: String(decoding: stdout, as: UTF8.self),
            standardError: String(decoding: stderr, as: UTF8.self))
    }

    @Test func migrateCompanyAndTokenCommands() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.executable.path), "build surveyd first")
        let url = try await TestDatabase.scratchDatabase("cli")
        let environment = ["DATABASE_URL": url, "SURVEYD_SQL_DIR": TestDatabase.sqlDirectory]

        let migrate = try run(["migrate"], environment: environment)
        #expect(migrate.status == 0, "\(migrate.standardError)")
        #expect(migrate.standardOutput.contains("Applied: 0001_"))
        let again = try run(["migrate"], environment: environment)
        #expect(again.standardOutput == "Database is up to date.\n")

        let created = try run(["company", "create", "--name", "Gaufres SA"], environment: environment)
        #expect(created.status == 0, "\(created.standardError)")
        let lines = created.standardOutput.split(separator: "\n").map(String.init)
        let companyID = try #require(lines.first?.split(separator: " ").dropFirst().first.flatMap { Int($0) })
        let token = try #require(lines.last)
        #expect(token.hasPrefix("nps_live_"))
        // The privileged login is reported on stderr, never the token.
        #expect(!created.standardError.contains(token))

        let connection = try await TestDatabase.connect(url: url)
        let hash = try await connection.query(
            "SELECT encode(token_hash, 'hex') FROM api_tokens WHERE company_id = \(companyID)").one().decode(String.self)
        #expect(!hash.isEmpty)

        let issued = try run(["token", "create", "--company", String(companyID)], environment: environment)
        #expect(issued.status == 0, "\(issued.standardError)")
        let tokenID = try #require(issued.standardOutput.split(separator: " ").dropFirst(2).first.flatMap { Int($0) })
        let revoked = try run(["token", "revoke", String(tokenID)], environment: environment)
        #expect(revoked.status == 0, "\(revoked.standardError)")
        let revokedAt = try await connection.query(
            "SELECT revoked_at IS NOT NULL FROM api_tokens WHERE token_id = \(tokenID)").one().decode(Bool.self)
        #expect(revokedAt)

        let unknown = try run(["token", "revoke", "999999999"], environment: environment)
        #expect(unknown.status != 0)
        let missingURL = try run(["migrate"], environment: ["DATABASE_URL": "", "MIGRATION_DATABASE_URL": ""])
        #expect(missingURL.status != 0)
        #expect(missingURL.standardError.contains("DATABASE_URL is not set"))
        let badName = try run(["company", "create", "--name", ""], environment: environment)
        #expect(badName.status != 0)
        // serve and worker refuse to start without a valid phone-number hash key.
        for command in ["serve", "worker"] {
            for key in ["", "not-hex", String(repeating: "a", count: 63)] {
                let refused = try run([command], environment: environment.merging(["DESTINATION_HASH_KEY": key, "PORT": "1"]) { $1 })
                #expect(refused.status != 0)
                #expect(refused.standardError.contains("DESTINATION_HASH_KEY"), "\(refused.standardError)")
            }
        }
        // Whole numbers stay whole: not rounded, not read in exponent form.
        for (name, bad) in [("DATABASE_POOL_MAX_WAITERS", "1.5"), ("DATABASE_POOL_WAIT_TIMEOUT_MS", "1e3")] {
            let refused = try run(["serve"], environment: environment.merging([name: bad, "PORT": "1"]) { $1 })
            #expect(refused.status != 0)
            #expect(refused.standardError.contains(name), "\(refused.standardError)")
        }
        await connection.close()
    }

    /// Issue 12: an unset SMS_PROVIDER meant `console`, so a real deployment recorded every
    /// message as sent and delivered none. Only an explicit `console` may log instead.
    @Test func theWorkerRefusesToGuessItsProvider() async throws {
        let url = try await TestDatabase.migratedScratchDatabase("provider")
        let environment = [
            "DATABASE_URL": url, "SURVEYD_SQL_DIR": TestDatabase.sqlDirectory, "DESTINATION_HASH_KEY": String(repeating: "ab", count: 32),
        ]
        let refused = try run(["worker"], environment: environment.merging(["SMS_PROVIDER": ""]) { $1 })
        #expect(refused.status != 0)
        #expect(refused.standardError.contains("SMS_PROVIDER is not set"), "\(refused.standardError)")
        #expect(refused.standardError.contains("console"), "the message says how to choose")
        let unknown = try run(["worker"], environment: environment.merging(["SMS_PROVIDER": "nexmo"]) { $1 })
        #expect(unknown.status != 0)
        #expect(unknown.standardError.contains("must be twilio, console or accept-all"))
    }

    /// A switch that is neither 0 nor 1 stops serve with its name, rather than being guessed.
    @Test func aSwitchMustBeZeroOrOne() async throws {
        let url = try await TestDatabase.migratedScratchDatabase("switch")
        let environment = [
            "DATABASE_URL": url, "SURVEYD_SQL_DIR": TestDatabase.sqlDirectory, "DESTINATION_HASH_KEY": String(repeating: "ab", count: 32),
            "PORT": "1", "DATABASE_BATCH_READS": "maybe",
        ]
        let refused = try run(["serve"], environment: environment)
        #expect(refused.status != 0)
        #expect(refused.standardError.contains("DATABASE_BATCH_READS is invalid: must be 0 or 1, got maybe"), "\(refused.standardError)")
    }

    /// serve checks the webhooks' account: it needs it, of Twilio's shape.
    @Test func webhooksNeedTheAccountSID() async throws {
        let url = try await TestDatabase.migratedScratchDatabase("account")
        let environment = [
            "DATABASE_URL": url, "SURVEYD_SQL_DIR": TestDatabase.sqlDirectory, "DESTINATION_HASH_KEY": String(repeating: "ab", count: 32),
            "TWILIO_AUTH_TOKEN": "token", "PORT": "1",
        ]
        for (sid, message) in [("", "TWILIO_ACCOUNT_SID is not set"), ("ACbench", "TWILIO_ACCOUNT_SID is invalid")] {
            let refused = try run(["serve"], environment: environment.merging(["TWILIO_ACCOUNT_SID": sid]) { $1 })
            #expect(refused.status != 0)
            #expect(refused.standardError.contains(message), "\(refused.standardError)")
        }
    }

    /// `--version`, and `--help` naming every environment variable the sources read.
    @Test func versionAndHelp() throws {
        let version = try run(["--version"], environment: [:])
        #expect(version.status == 0)
        #expect(version.standardOutput.range(of: #"^\d+\.\d+\.\d+\n$"#, options: .regularExpression) != nil, "\(version.standardOutput)")
        let help = try run(["--help"], environment: [:])
        #expect(help.status == 0)
        let sources = URL(fileURLWithPath: TestDatabase.sqlDirectory).deletingLastPathComponent().appendingPathComponent("Sources/surveyd")
        var read: Set<String> = []
        for file in try FileManager.default.contentsOfDirectory(atPath: sources.path) where file != "EnvironmentVariables.swift" {
            let text = try String(contentsOf: sources.appendingPathComponent(file), encoding: .utf8)
            for match in text.matches(of: #/(?:value|integer|double|optionalPort|flag)\("([A-Z][A-Z0-9_]+)"/#) { read.insert(String(match.1)) }
        }
        #expect(read.count > 20, "the scan found too little to prove anything: \(read)")
        for name in read {
            #expect(help.standardOutput.contains(name), "--help does not list \(name)")
        }
        #expect(help.standardOutput.contains("[unset: required (worker)]"), "defaults are listed")
    }

    /// Issue 12: `sms reply` printed `200 <Response></Response>` whatever happened, and
    /// posted to PUBLIC_BASE_URL rather than the local PORT.
    @Test func smsReplySaysWhatTheReplyDid() async throws {
        let url = try await TestDatabase.migratedScratchDatabase("smsreply")
        let port = Int.random(in: 20_000...60_000)
        let environment = [
            "DATABASE_URL": url, "SURVEYD_SQL_DIR": TestDatabase.sqlDirectory, "DESTINATION_HASH_KEY": String(repeating: "ab", count: 32),
            "TWILIO_AUTH_TOKEN": "token", "TWILIO_ACCOUNT_SID": "AC" + String(repeating: "1", count: 32), "PORT": String(port),
            "HOST": "127.0.0.1", "SURVEYD_OPENAPI": TestDatabase.sqlDirectory + "/../openapi.yaml",
            // Signed for the public URL, sent to the local port.
            "PUBLIC_BASE_URL": "https://surveys.example.invalid",
        ]
        let serve = Process()
        serve.executableURL = Self.executable
        serve.arguments = ["serve"]
        serve.environment = ProcessInfo.processInfo.environment.merging(environment.merging(["LOG_LEVEL": "error"]) { $1 }) { $1 }
        serve.standardOutput = FileHandle.nullDevice
        serve.standardError = FileHandle.nullDevice
        try serve.run()
        defer { serve.terminate() }
        var outcomes: [String] = []
        for _ in 0..<100 {
            let stop = try run(["sms", "reply", "--from", "+32470000001", "--body", "Stop please"], environment: environment)
            if stop.status == 0 {
                outcomes.append(stop.standardOutput)
                break
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(outcomes.first?.hasPrefix("Opted out") == true, "\(outcomes)")
        let score = try run(["sms", "reply", "--from", "+32470000002", "--body", "9"], environment: environment)
        #expect(score.standardOutput == "No open survey for that number: nothing recorded.\n", "\(score.standardOutput) \(score.standardError)")
        let help = try run(["sms", "reply", "--from", "+32470000002", "--body", "HELP"], environment: environment)
        #expect(help.standardOutput.hasPrefix("Help answered: Customer satisfaction surveys"), "\(help.standardOutput)")
    }

    /// Issue 17: SIGTERM ends `serve` within its grace period even while a request waits on
    /// a database that stopped answering (a partition: the proxy freezes). Without the
    /// bound, the graceful shutdown waits for that request, as long as the request waits.
    @Test(.timeLimit(.minutes(1))) func sigtermEndsServeWithinItsGraceWhileTheDatabaseIsSilent() async throws {
        let scratch = try #require(URLComponents(string: try await TestDatabase.migratedScratchDatabase("shutdown")))
        let proxy = try FreezingProxy(unixSocket: NetworkFaults.testDatabaseSocket().path)
        defer { proxy.stop() }
        let port = Int.random(in: 20_000...60_000)
        let serve = Process()
        serve.executableURL = Self.executable
        serve.arguments = ["serve"]
        serve.environment = ProcessInfo.processInfo.environment.merging([
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:\(proxy.port)\(scratch.path)", "SURVEYD_SQL_DIR": TestDatabase.sqlDirectory,
            "DESTINATION_HASH_KEY": String(repeating: "ab", count: 32), "PORT": String(port), "HOST": "127.0.0.1",
            "SURVEYD_OPENAPI": TestDatabase.sqlDirectory + "/../openapi.yaml", "LOG_LEVEL": "critical",
            "SHUTDOWN_GRACE_SECONDS": "2", "REQUEST_TIMEOUT_SECONDS": "60",
        ]) { $1 }
        serve.standardOutput = FileHandle.nullDevice
        serve.standardError = FileHandle.nullDevice
        try serve.run()
        defer { if serve.isRunning { kill(serve.processIdentifier, SIGKILL) } }
        func curl(_ arguments: [String]) throws -> Process {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
            process.arguments = ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "60"] + arguments
            process.standardOutput = Pipe()
            process.standardError = FileHandle.nullDevice
            try process.run()
            return process
        }
        // Up, and through the proxy to the database.
        var ready = false
        for _ in 0..<100 where !ready {
            let probe = try curl(["http://127.0.0.1:\(port)/ready"])
            probe.waitUntilExit()
            ready = probe.terminationStatus == 0
                && String(decoding: (probe.standardOutput as! Pipe).fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) == "200"
            if !ready { try await Task.sleep(for: .milliseconds(100)) }
        }
        try #require(ready, "serve did not become ready")
        proxy.freeze()
        // A request whose token lookup now waits on the silent database.
        let stuck = try curl(["-H", "Authorization: Bearer nps_live_" + String(repeating: "x", count: 43), "http://127.0.0.1:\(port)/survey/1.0.0/surveys"])
        defer { stuck.terminate() }
        try await Task.sleep(for: .milliseconds(500))
        try #require(stuck.isRunning, "the request did not wait on the database")
        let started = ContinuousClock.now
        serve.terminate()
        while serve.isRunning, started.duration(to: .now) < .seconds(20) {
            try await Task.sleep(for: .milliseconds(50))
        }
        let took = started.duration(to: .now)
        #expect(!serve.isRunning, "serve still running \(took) after SIGTERM")
        // The grace period (2 s), then a moment for cancellation, then the watchdog.
        #expect(took < .seconds(8), "serve took \(took) to exit after SIGTERM")
    }
}
