import CryptoKit
import Foundation

// Fields of edgeq.json this app reads (checked against a real export by edgeq's tests):
// edgeq.json: verdict.passed
// edgeq.json: verdict.failures
// edgeq.json: target.name
// edgeq.json: artifacts[].name
// edgeq.json: artifacts[].path
// edgeq.json: artifacts[].format
// edgeq.json: artifacts[].precision
// edgeq.json: artifacts[].role
// edgeq.json: artifacts[].sha256
// edgeq.json: artifacts[].details.io.inputs[].name
// edgeq.json: artifacts[].details.io.inputs[].dtype
// edgeq.json: artifacts[].details.io.inputs[].shape
// edgeq.json: artifacts[].details.io.inputs[].batch
// edgeq.json: artifacts[].details.io.inputs[].layout
// edgeq.json: artifacts[].details.io.inputs[].preprocessing
// edgeq.json: artifacts[].details.io.outputs[].name

/// A dimension is an Int, or a String for a dynamic axis ("batch", "s40").
public enum Dim: Decodable {
    case fixed(Int), dynamic(String)
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let n = try? c.decode(Int.self) { self = .fixed(n) } else { self = .dynamic(try c.decode(String.self)) }
    }
    var value: Int? { if case let .fixed(n) = self { return n } else { return nil } }
}

public struct Preprocessing: Decodable {
    public let resize: Int?
    public let crop: [Int]?
    public let mean: [Double]
    public let std: [Double]
    public let layout: String
    public let dtype: String
    public let channels: Int
    public let scale: Double
}

public struct TensorIO: Decodable {
    public let name: String
    public let dtype: String?
    public let shape: [Dim]
    public let batch: Dim?   // 1 on CoreML/NNAPI targets even when the source model is dynamic
    public let layout: String?
    public let preprocessing: Preprocessing?
}

public struct ArtifactIO: Decodable { public let inputs: [TensorIO]; public let outputs: [TensorIO] }
public struct Details: Decodable { public let io: ArtifactIO? }

public struct Artifact: Decodable {
    public let name, path, format, precision, role, sha256: String
    public let details: Details?
}

public struct Verdict: Decodable { public let passed: Bool; public let failures: [String] }
public struct TargetInfo: Decodable { public let name: String }

public struct EdgeqManifest: Decodable {
    public let verdict: Verdict
    public let target: TargetInfo
    public let artifacts: [Artifact]

    public static func load(folder: URL) throws -> EdgeqManifest {
        try JSONDecoder().decode(EdgeqManifest.self, from: Data(contentsOf: folder.appendingPathComponent("edgeq.json")))
    }

    /// The INT8 candidate of `format` ("onnx" or "pte"), else any candidate of it.
    public func pick(_ format: String) -> Artifact? {
        let candidates = artifacts.filter { $0.format == format && $0.role == "candidate" }
        return candidates.first { $0.precision.hasPrefix("int8") } ?? candidates.first
    }

    /// Refuse a copy that does not match the manifest before it runs.
    public func verify(_ artifact: Artifact, in folder: URL) throws -> URL {
        let url = folder.appendingPathComponent(artifact.path)
        let digest = SHA256.hash(data: try Data(contentsOf: url)).map { String(format: "%02x", $0) }.joined()
        guard digest == artifact.sha256 else { throw EdgeqError.tampered(url.lastPathComponent) }
        return url
    }
}

public enum EdgeqError: Error {
    case failedBudget([String]), tampered(String), noArtifact(String), noIO(String), unsupported(String)
}
