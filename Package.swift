// swift-tools-version:6.1
import PackageDescription

let package = Package(
  name: "tgsess",
  platforms: [.macOS(.v13)],
  products: [
    .executable(name: "tgsess", targets: ["tgsess"]),
    .executable(name: "tgsess-fleet", targets: ["tgsess-fleet"]),
    .executable(name: "tgsess-bot", targets: ["tgsess-bot"]),
    .library(name: "Store", targets: ["Store"]),
    .library(name: "Jobs", targets: ["Jobs"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
    .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
  ],
  targets: [
    .systemLibrary(
      name: "COpenSSL",
      pkgConfig: "libcrypto",
      providers: [.apt(["libssl-dev"])]
    ),
    .systemLibrary(
      name: "CArchive",
      pkgConfig: "libarchive",
      providers: [.apt(["libarchive-dev"])]
    ),
    .systemLibrary(name: "CShims"),
    .target(
      name: "Store",
      dependencies: [
        "COpenSSL",
        "CArchive",
        "CShims",
        .product(name: "GRDB", package: "GRDB.swift"),
        .product(name: "GRDBSQLite", package: "GRDB.swift"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "TOMLKit", package: "TOMLKit"),
      ]
    ),
    .target(
      name: "Jobs",
      dependencies: [
        "Store",
        .product(name: "Logging", package: "swift-log"),
      ]
    ),
    .executableTarget(
      name: "tgsess",
      dependencies: [
        "Jobs",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
      ]
    ),
    .executableTarget(
      name: "tgsess-fleet",
      dependencies: [
        "Store",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ]
    ),
    .executableTarget(
      name: "tgsess-bot",
      dependencies: [
        "Jobs",
        "Store",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "AsyncHTTPClient", package: "async-http-client"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ]
    ),
    .target(
      name: "TestSupport",
      dependencies: ["Store", "Jobs"],
      path: "Tests/TestSupport"
    ),
    .testTarget(
      name: "StoreTests",
      dependencies: ["Store", "TestSupport"],
      resources: [.copy("Fixtures")]
    ),
    .testTarget(name: "JobsTests", dependencies: ["Jobs", "Store", "TestSupport"]),
    .testTarget(name: "tgsessTests", dependencies: ["Jobs", "Store", "TestSupport"]),
    // The torture suite (scripts/torture.sh): skipped unless TGSESS_TORTURE_SCALE is set.
    .testTarget(
      name: "TortureTests",
      dependencies: ["Jobs", "Store", "TestSupport"],
      path: "Tests/Torture",
      exclude: ["Resources"]
    ),
    .testTarget(
      name: "BotTests",
      dependencies: ["tgsess-bot", "Store", "TestSupport"],
      exclude: ["Fixtures"]
    ),
  ]
)
