import Foundation

/// libFuzzer's own driver (the `main` it would supply), started from the executable's entry
/// point: SwiftPM names that entry `<Module>_main` and links `main` to it, so a target defines
/// `<Module>_main` with `@_cdecl` and calls this.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
  _ argc: UnsafeMutablePointer<CInt>,
  _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
  _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

/// Runs libFuzzer with the process's arguments and `callback` as LLVMFuzzerTestOneInput.
public func runFuzzer(
  _ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
  _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt {
  var count = argc
  var arguments = argv
  return LLVMFuzzerRunDriver(&count, &arguments, callback)
}

/// The input as bytes.
public func bytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
  guard let data, size > 0 else { return [] }
  return Array(UnsafeBufferPointer(start: data, count: size))
}

/// A private scratch directory for targets that need files (created once per process).
public let scratchDirectory: String = {
  let path = NSTemporaryDirectory() + "/tgsess-fuzz-\(getpid())"
  try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  return path
}()

/// Ends the process as a crash libFuzzer records, naming the broken property.
public func violated(_ property: String) -> Never {
  fatalError("fuzz property violated: \(property)")
}
