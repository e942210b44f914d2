import FuzzChecks
import FuzzSupport

// The session-file inspector on every input, written to a file.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  if let problem = FuzzChecks.sessionFile(bytes(data, size), scratch: scratchDirectory) { violated(problem) }
  return 0
}

@_cdecl("FuzzSessionFile_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
  runFuzzer(argc, argv, fuzzOneInput)
}
