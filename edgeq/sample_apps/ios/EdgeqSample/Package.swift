// swift-tools-version:5.9
import PackageDescription

let package = Package(
    name: "EdgeqSample",
    platforms: [.iOS(.v16), .macOS(.v13)],
    products: [.library(name: "EdgeqSample", targets: ["EdgeqSample"])],
    dependencies: [
        // Match the versions edgeq exported with (edgeq.json -> dependencies).
        .package(url: "https://github.com/microsoft/onnxruntime-swift-package-manager", from: "1.20.0"),
        .package(url: "https://github.com/pytorch/executorch", branch: "swiftpm-1.0.0"),
    ],
    targets: [
        .target(
            name: "EdgeqSample",
            dependencies: [
                .product(name: "onnxruntime", package: "onnxruntime-swift-package-manager"),
                .product(name: "executorch", package: "executorch"),
                .product(name: "backend_xnnpack", package: "executorch"),
                .product(name: "kernels_optimized", package: "executorch"),
            ]
        ),
    ]
)
