import FuzzChecks
import FuzzSupport

// The archive reader on every input, as an unencrypted tar.zst file.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  if let problem = FuzzChecks.archive(bytes(data, size), scratch: scratchDirectory) { violated(problem) }
  return 0
}

@_cdecl("FuzzArchiveReader_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
  runFuzzer(argc, argv, fuzzOneInput)
}
