import Postgres
import SurveyDomain

/// The announcements that a token was revoked, deleted or changed, as they are committed
/// anywhere: a trigger on `api_tokens` notifies `api_token_changes` with the token's id, and
/// this listens on a connection of its own, outside the pool.
public final class TokenChangeFeed: Sendable {
    public static let channel = "api_token_changes"

    private let connection: PostgresConnection

    private init(connection: PostgresConnection) {
        self.connection = connection
    }

    /// Opens a connection and starts listening: every announcement committed from the
    /// moment this returns is received.
    public static func open(_ database: Database) async throws -> TokenChangeFeed {
        let connection = try await database.client.makeDedicatedConnection()
        do {
            try await connection.listen(channel)
        } catch {
            await connection.close()
            throw error
        }
        return TokenChangeFeed(connection: connection)
    }

    /// The tokens announced since the last call, waiting up to `timeout` for the first.
    public func changes(waitingUpTo timeout: Duration) async throws -> [TokenID] {
        try await connection.notifications(timeout: timeout).compactMap { Int64($0.payload).map(TokenID.init(rawValue:)) }
    }

    /// A round trip to the server: when it returns, the connection is alive, and every
    /// announcement sent before the server answered has arrived (one ordered stream), to
    /// be read by the next `changes(waitingUpTo:)`.
    public func heartbeat() async throws {
        try await connection.simpleQuery("SELECT 1")
    }

    public func close() async {
        await connection.close()
    }
}
