package dev.edgeq.sample

import android.app.Activity
import android.graphics.BitmapFactory
import android.os.Bundle
import android.widget.TextView
import java.io.File

/**
 * Copies the export folder pushed with `adb push out/ /data/local/tmp/edgeq/` and classifies `sample.png` with the
 * INT8 ONNX artifact (ONNX Runtime) and, when present, the INT8 .pte (ExecuTorch).
 */
class MainActivity : Activity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val view = TextView(this)
        setContentView(view)
        val folder = File("/data/local/tmp/edgeq")
        val manifest = EdgeqManifest.load(folder)
        if (!manifest.passed) {
            view.text = "This export FAILED its budget:\n" + manifest.failures.joinToString("\n")
            return
        }
        val lines = mutableListOf("target ${manifest.target}")
        for (format in listOf("onnx", "pte")) {
            val runner = try { EdgeqRunner(manifest, format) } catch (e: IllegalStateException) { lines += "$format: ${e.message}"; continue }
            runner.use {
                val spec = it.artifact.inputs.single()
                val pre = spec.preprocessing ?: error("${it.artifact.name}: no image preprocessing recorded")
                val input = Preprocess.image(BitmapFactory.decodeFile(File(folder, "sample.png").path), pre)
                val scores = it.run(mapOf(spec.name to input))
                lines += "${it.artifact.name}: class ${scores.indices.maxByOrNull { i -> scores[i] }}"
            }
        }
        view.text = lines.joinToString("\n")
    }
}
