import Testing

@testable import Junction

@Suite("Shared dial outcome")
struct DialOutcomeTests {
    struct Refused: Error {}

    @Test("a sender that starts waiting after the dial failed still gets the failure")
    func lateWaiterSeesFailure() async throws {
        let outcome = DialOutcome()
        outcome.complete(.failure(Refused()))
        await #expect(throws: Refused.self) { try await outcome.wait() }
        // Only the first completion counts.
        outcome.complete(.success(()))
        await #expect(throws: Refused.self) { try await outcome.wait() }
    }

}
