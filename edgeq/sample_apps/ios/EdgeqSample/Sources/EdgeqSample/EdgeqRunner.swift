import ExecuTorch
import Foundation
import onnxruntime_objc

/// Runs one preprocessed sample through the artifact edgeq chose, shaped as its `details.io` says.
public final class EdgeqRunner {
    public let artifact: Artifact
    private let io: ArtifactIO
    private var ortSession: ORTSession?
    private var module: Module?

    public init(folder: URL, format: String) throws {
        let manifest = try EdgeqManifest.load(folder: folder)
        guard manifest.verdict.passed else { throw EdgeqError.failedBudget(manifest.verdict.failures) }
        guard let art = manifest.pick(format) else { throw EdgeqError.noArtifact(format) }
        guard let io = art.details?.io else { throw EdgeqError.noIO(art.name) }
        artifact = art
        self.io = io
        let url = try manifest.verify(art, in: folder)
        if format == "onnx" {
            let env = try ORTEnv(loggingLevel: ORTLoggingLevel.warning)
            ortSession = try ORTSession(env: env, modelPath: url.path, sessionOptions: nil)
        } else {
            module = Module(filePath: url.path)
            try module?.load("forward")
        }
    }

    /// Per-sample shape: the artifact's shape with the batch axis 1 (fixed at 1, or dynamic).
    private func sampleShape(_ spec: TensorIO) throws -> [Int] {
        if let b = spec.batch?.value, b != 1 { throw EdgeqError.unsupported("\(artifact.name) is fixed at batch \(b)") }
        let rest = try spec.shape.dropFirst().map { dim -> Int in
            guard let n = dim.value else { throw EdgeqError.unsupported("\(spec.name) has a dynamic non-batch axis") }
            return n
        }
        return [1] + rest
    }

    /// `sample`: one float array per input name (already preprocessed, see Preprocess.swift).
    public func run(_ sample: [String: [Float]]) throws -> [Float] {
        if let session = ortSession {
            var feeds: [String: ORTValue] = [:]
            for spec in io.inputs {
                guard spec.dtype == "float32", var values = sample[spec.name] else {
                    throw EdgeqError.unsupported("input \(spec.name): dtype \(spec.dtype ?? "?")")
                }
                let data = NSMutableData(bytes: &values, length: values.count * MemoryLayout<Float>.size)
                feeds[spec.name] = try ORTValue(tensorData: data, elementType: ORTTensorElementDataType.float,
                                                shape: try sampleShape(spec).map { NSNumber(value: $0) })
            }
            let outName = io.outputs[0].name
            let outputs = try session.run(withInputs: feeds, outputNames: [outName], runOptions: nil)
            guard let out = outputs[outName] else { throw EdgeqError.unsupported("no output \(outName)") }
            let bytes = try out.tensorData() as Data
            return bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }
        guard let module else { throw EdgeqError.noArtifact(artifact.format) }
        let tensors = try io.inputs.map { spec -> Tensor<Float> in
            guard let values = sample[spec.name] else { throw EdgeqError.unsupported("missing input \(spec.name)") }
            return Tensor<Float>(values, shape: try sampleShape(spec))
        }
        let outputs = try module.forward(tensors)
        guard let out: Tensor<Float> = outputs.first?.tensor() else { throw EdgeqError.unsupported("no tensor output") }
        return out.scalars()
    }
}
