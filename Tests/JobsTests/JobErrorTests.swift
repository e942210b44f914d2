import Jobs
import Store
import Testing

@Suite struct JobErrorTests {
  @Test func storeErrorKeepsContextAndUnderlyingMessage() {
    let error = JobError.store(context: "user 42", underlying: .missing(path: "/x/y", hint: "run tgsess init"))
    #expect(error.errorDescription == "user 42: /x/y: not found; run tgsess init")
  }
}
