package dev.edgeq.sample

import android.graphics.Bitmap
import org.json.JSONObject

/**
 * The preprocessing edgeq recorded for image inputs (`details.io.inputs[].preprocessing`): resize the shorter side,
 * centre crop, scale to [0, 1], (x - mean) / std per channel, NCHW or NHWC. Mirrors edgeq/imagefolder.py.
 */
object Preprocess {
    fun image(bitmap: Bitmap, spec: JSONObject): FloatArray {
        var bmp = bitmap
        if (!spec.isNull("resize")) {
            val side = spec.getInt("resize")
            val k = side.toFloat() / minOf(bmp.width, bmp.height)
            bmp = Bitmap.createScaledBitmap(bmp, Math.round(bmp.width * k), Math.round(bmp.height * k), true)
        }
        if (!spec.isNull("crop")) {
            val crop = spec.getJSONArray("crop")
            val h = crop.getInt(0)
            val w = crop.getInt(1)
            bmp = Bitmap.createBitmap(bmp, (bmp.width - w) / 2, (bmp.height - h) / 2, w, h)
        }
        val channels = spec.getInt("channels")
        val mean = spec.getJSONArray("mean").let { a -> FloatArray(channels) { a.getDouble(minOf(it, a.length() - 1)).toFloat() } }
        val std = spec.getJSONArray("std").let { a -> FloatArray(channels) { a.getDouble(minOf(it, a.length() - 1)).toFloat() } }
        val scale = spec.getDouble("scale").toFloat()
        val nchw = spec.getString("layout") == "NCHW"
        val out = FloatArray(channels * bmp.width * bmp.height)
        val pixels = IntArray(bmp.width * bmp.height).also { bmp.getPixels(it, 0, bmp.width, 0, 0, bmp.width, bmp.height) }
        for (i in pixels.indices) {
            val p = pixels[i]
            val rgb = intArrayOf((p shr 16) and 0xff, (p shr 8) and 0xff, p and 0xff)
            for (c in 0 until channels) {
                // grayscale: ITU-R 601-2 luma, as PIL's convert("L")
                val raw = if (channels == 1) (rgb[0] * 299 + rgb[1] * 587 + rgb[2] * 114) / 1000f else rgb[c].toFloat()
                val v = (raw * scale - mean[c]) / std[c]
                out[if (nchw) c * pixels.size + i else i * channels + c] = v
            }
        }
        return out
    }
}
