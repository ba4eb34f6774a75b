package dev.edgeq.sample

import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor
import java.nio.FloatBuffer
import java.nio.LongBuffer

/**
 * Runs one sample through the artifact edgeq chose, shaped as the manifest says. [sample] holds one sample per
 * input (already preprocessed as `details.io.inputs[].preprocessing` describes; see Preprocess.kt).
 */
class EdgeqRunner(private val manifest: EdgeqManifest, format: String) : AutoCloseable {
    val artifact: ArtifactSpec = manifest.pick(format)
    private val file = manifest.verify(artifact)
    private val env: OrtEnvironment? = if (format == "onnx") OrtEnvironment.getEnvironment() else null
    private val session: OrtSession? = env?.createSession(file.absolutePath, OrtSession.SessionOptions())
    private val module: Module? = if (format == "pte") Module.load(file.absolutePath) else null

    /** Per-sample shape: the artifact's shape with the batch axis set to 1 (fixed or dynamic alike). */
    private fun sampleShape(spec: InputSpec): LongArray {
        val dims = spec.shape.drop(1).map { it ?: error("input ${spec.name} has a dynamic non-batch axis") }
        return longArrayOf(1L) + dims.toLongArray()
    }

    fun run(sample: Map<String, Any>): FloatArray {
        for (spec in artifact.inputs) require(spec.fixedBatch == null || spec.fixedBatch == 1L) {
            "${artifact.name} is fixed at batch ${spec.fixedBatch}; this app feeds one sample at a time"
        }
        return if (session != null) runOnnx(sample) else runPte(sample)
    }

    private fun runOnnx(sample: Map<String, Any>): FloatArray {
        val tensors = artifact.inputs.associate { spec ->
            val shape = sampleShape(spec)
            spec.name to when (spec.dtype) {
                "float32" -> OnnxTensor.createTensor(env, FloatBuffer.wrap(sample.getValue(spec.name) as FloatArray), shape)
                "int64" -> OnnxTensor.createTensor(env, LongBuffer.wrap(sample.getValue(spec.name) as LongArray), shape)
                else -> error("unsupported input dtype ${spec.dtype} for ${spec.name}")
            }
        }
        try {
            session!!.run(tensors).use { result ->
                val out = result.get(artifact.outputNames.first()).get() as OnnxTensor
                val buffer = out.floatBuffer
                return FloatArray(buffer.remaining()).also { buffer.get(it) }
            }
        } finally {
            tensors.values.forEach { it.close() }
        }
    }

    private fun runPte(sample: Map<String, Any>): FloatArray {
        val inputs = artifact.inputs.map { spec ->
            val shape = sampleShape(spec)
            when (spec.dtype) {
                "float32" -> EValue.from(Tensor.fromBlob(sample.getValue(spec.name) as FloatArray, shape))
                "int64" -> EValue.from(Tensor.fromBlob(sample.getValue(spec.name) as LongArray, shape))
                else -> error("unsupported input dtype ${spec.dtype} for ${spec.name}")
            }
        }
        return module!!.forward(*inputs.toTypedArray())[0].toTensor().dataAsFloatArray
    }

    override fun close() {
        session?.close()
        module?.destroy()
    }
}
