package dev.edgeq.sample

import org.json.JSONArray
import org.json.JSONObject
import java.io.File
import java.security.MessageDigest

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
// edgeq.json: artifacts[].details.io.outputs[].shape

/** One input as the shipped file declares it: the batch may be fixed at 1 (NNAPI) even when the model is dynamic. */
data class InputSpec(
    val name: String,
    val dtype: String,
    val shape: List<Long?>,   // null = dynamic axis
    val fixedBatch: Long?,    // null = dynamic batch
    val layout: String?,
    val preprocessing: JSONObject?,
)

data class ArtifactSpec(
    val name: String,
    val path: String,
    val format: String,
    val precision: String,
    val sha256: String,
    val inputs: List<InputSpec>,
    val outputNames: List<String>,
)

class EdgeqManifest(private val root: JSONObject, val folder: File) {
    val passed: Boolean get() = root.getJSONObject("verdict").getBoolean("passed")
    val failures: List<String> get() = root.getJSONObject("verdict").getJSONArray("failures").strings()
    val target: String get() = root.getJSONObject("target").getString("name")

    /** The INT8 candidate of [format] ("onnx" or "pte"), else any candidate of it. */
    fun pick(format: String): ArtifactSpec {
        val arts = root.getJSONArray("artifacts").objects()
            .filter { it.getString("format") == format && it.getString("role") == "candidate" }
        val chosen = arts.firstOrNull { it.getString("precision").startsWith("int8") } ?: arts.firstOrNull()
            ?: throw IllegalStateException("edgeq.json has no $format candidate artifact (export with --format $format)")
        val io = chosen.optJSONObject("details")?.optJSONObject("io")
            ?: throw IllegalStateException("${chosen.getString("name")} has no details.io: re-export with a newer edgeq")
        return ArtifactSpec(
            name = chosen.getString("name"),
            path = chosen.getString("path"),
            format = format,
            precision = chosen.getString("precision"),
            sha256 = chosen.getString("sha256"),
            inputs = io.getJSONArray("inputs").objects().map { spec ->
                val dims = spec.getJSONArray("shape")
                InputSpec(
                    name = spec.getString("name"),
                    dtype = spec.getString("dtype"),
                    shape = (0 until dims.length()).map { i -> (dims.get(i) as? Number)?.toLong() },
                    fixedBatch = (spec.opt("batch") as? Number)?.toLong(),
                    layout = spec.optString("layout").takeIf { it.isNotEmpty() && it != "null" },
                    preprocessing = spec.optJSONObject("preprocessing"),
                )
            },
            outputNames = io.getJSONArray("outputs").objects().map { it.getString("name") },
        )
    }

    /** Refuse a copy that does not match the manifest before it runs. */
    fun verify(artifact: ArtifactSpec): File {
        val file = File(folder, artifact.path)
        val digest = MessageDigest.getInstance("SHA-256")
        file.inputStream().use { input ->
            val buffer = ByteArray(1 shl 16)
            while (true) {
                val n = input.read(buffer)
                if (n < 0) break
                digest.update(buffer, 0, n)
            }
        }
        val hex = digest.digest().joinToString("") { "%02x".format(it) }
        check(hex == artifact.sha256) { "${file.name} does not match edgeq.json (sha256); re-copy the export" }
        return file
    }

    companion object {
        fun load(folder: File): EdgeqManifest = EdgeqManifest(JSONObject(File(folder, "edgeq.json").readText()), folder)
    }
}

private fun JSONArray.objects(): List<JSONObject> = (0 until length()).map { getJSONObject(it) }
private fun JSONArray.strings(): List<String> = (0 until length()).map { getString(it) }
