import FuzzChecks
import FuzzSupport

// Both session-string parsers (Telethon and Pyrogram) on every input.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  if let problem = FuzzChecks.sessionStrings(bytes(data, size)) { violated(problem) }
  return 0
}

@_cdecl("FuzzSessionStrings_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
  runFuzzer(argc, argv, fuzzOneInput)
}
