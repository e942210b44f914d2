// swift-tools-version:6.1
// libFuzzer targets for tgsess's parsers, built apart from the main package so its build stays
// fast. Linux only:
//   swift build -c release -Xswiftc -sanitize=fuzzer -Xswiftc -parse-as-library
// scripts/torture.sh builds and runs them (see fuzz/README.md).
import PackageDescription

let package = Package(
  name: "tgsess-fuzz",
  platforms: [.macOS(.v13)],
  dependencies: [.package(name: "tgsess", path: "..")],
  targets: [
    // The properties every target checks (a symlink to Tests/StoreTests/FuzzChecks.swift, which
    // the regression tests replay the found inputs through).
    .target(name: "FuzzChecks", dependencies: [.product(name: "Store", package: "tgsess")]),
    .target(name: "FuzzSupport"),
    .executableTarget(name: "FuzzSessionStrings", dependencies: ["FuzzChecks", "FuzzSupport"]),
    .executableTarget(name: "FuzzSessionFile", dependencies: ["FuzzChecks", "FuzzSupport"]),
    .executableTarget(name: "FuzzManifest", dependencies: ["FuzzChecks", "FuzzSupport"]),
    .executableTarget(name: "FuzzArchiveReader", dependencies: ["FuzzChecks", "FuzzSupport"]),
  ]
)
