import CoreGraphics
import Foundation

/// The preprocessing edgeq recorded (`details.io.inputs[].preprocessing`): resize the shorter side, centre crop,
/// scale, (x - mean) / std per channel, NCHW or NHWC. Mirrors edgeq/imagefolder.py.
public enum Preprocess {
    public static func image(_ image: CGImage, _ p: Preprocessing) -> [Float] {
        var w = image.width, h = image.height
        if let side = p.resize {
            let k = Double(side) / Double(min(w, h))
            w = Int((Double(w) * k).rounded()); h = Int((Double(h) * k).rounded())
        }
        let (ch, cw) = p.crop.map { ($0[0], $0[1]) } ?? (h, w)
        var rgba = [UInt8](repeating: 0, count: w * h * 4)
        let ctx = CGContext(data: &rgba, width: w, height: h, bitsPerComponent: 8, bytesPerRow: w * 4,
                            space: CGColorSpaceCreateDeviceRGB(),
                            bitmapInfo: CGImageAlphaInfo.noneSkipLast.rawValue)!
        ctx.interpolationQuality = .medium
        ctx.draw(image, in: CGRect(x: 0, y: 0, width: w, height: h))
        let top = (h - ch) / 2, left = (w - cw) / 2
        var out = [Float](repeating: 0, count: p.channels * ch * cw)
        for y in 0..<ch {
            for x in 0..<cw {
                let o = ((y + top) * w + (x + left)) * 4
                let rgb = [Float(rgba[o]), Float(rgba[o + 1]), Float(rgba[o + 2])]
                for c in 0..<p.channels {
                    // grayscale: ITU-R 601-2 luma, as PIL's convert("L")
                    let raw = p.channels == 1 ? (rgb[0] * 299 + rgb[1] * 587 + rgb[2] * 114) / 1000 : rgb[c]
                    let mean = Float(p.mean[min(c, p.mean.count - 1)]), std = Float(p.std[min(c, p.std.count - 1)])
                    let v = (raw * Float(p.scale) - mean) / std
                    let i = p.layout == "NCHW" ? c * ch * cw + y * cw + x : (y * cw + x) * p.channels + c
                    out[i] = v
                }
            }
        }
        return out
    }
}
