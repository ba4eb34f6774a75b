// edgeq_image.h: read a PPM/PGM image and apply the preprocessing edgeq recorded in edgeq.json, in its order:
// decode (RGB, or L for channels=1) -> resize the shorter side (bilinear) -> centre crop -> scale to [0, 1]
// -> (x - mean) / std per channel -> NCHW or NHWC -> float32 or uint8 (uint8 skips scale and normalize).
//
// It reproduces edgeq/imagefolder.py (Pillow) bit for bit: Pillow's RGB->L weights, and Pillow's bilinear
// resampling (a triangle filter widened by the downscale factor, 22-bit fixed-point coefficients, horizontal
// pass then vertical pass, each rounded to 8 bits), so the device feeds the model exactly what it was
// calibrated and validated on. Only netpbm files are decoded (no libpng/libjpeg dependency): convert others
// with e.g. `convert photo.jpg photo.ppm` (ImageMagick) or Pillow's `Image.open(f).save("x.ppm")`.
#pragma once

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace edgeq {

struct Image {
  int width = 0, height = 0, channels = 0;  // channels: 1 (L) or 3 (RGB), interleaved rows
  std::vector<uint8_t> px;
  uint8_t at(int y, int x, int c) const { return px[(static_cast<size_t>(y) * width + x) * channels + c]; }
};

struct Preprocessing {
  int resize = 0;                 // shorter side in px; 0 = none
  int crop_h = 0, crop_w = 0;     // centre crop; 0 = none
  std::vector<float> mean{0.0f};  // one value, or one per channel
  std::vector<float> std{1.0f};
  std::string layout = "NCHW";
  std::string dtype = "float32";
  int channels = 3;
};

namespace detail {

inline int pnm_token(std::istream& f, const std::string& path) {
  // Header integers, skipping whitespace and '#' comments (netpbm allows them between any two tokens).
  int c = f.get();
  while (c != EOF && (std::isspace(c) || c == '#')) {
    if (c == '#')
      while (c != EOF && c != '\n') c = f.get();
    c = f.get();
  }
  if (c == EOF || !std::isdigit(c)) throw std::runtime_error(path + ": malformed PPM/PGM header");
  long v = 0;
  while (c != EOF && std::isdigit(c)) {
    v = v * 10 + (c - '0');
    if (v > (1 << 24)) throw std::runtime_error(path + ": PPM/PGM header value too large");
    c = f.get();
  }
  if (c != EOF) f.unget();
  return static_cast<int>(v);
}

}  // namespace detail

// Binary (P5 grey, P6 RGB) and plain (P2, P3) netpbm, 8-bit (maxval 255).
inline Image read_pnm(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open image " + path);
  char magic[2] = {0, 0};
  f.read(magic, 2);
  if (magic[0] != 'P' || (magic[1] != '2' && magic[1] != '3' && magic[1] != '5' && magic[1] != '6'))
    throw std::runtime_error(path + ": not a PPM/PGM image (this app decodes netpbm only; convert PNG/JPEG with "
                             "`convert in.png out.ppm`)");
  Image im;
  im.channels = (magic[1] == '3' || magic[1] == '6') ? 3 : 1;
  im.width = detail::pnm_token(f, path);
  im.height = detail::pnm_token(f, path);
  const int maxval = detail::pnm_token(f, path);
  if (im.width < 1 || im.height < 1 || im.width > 16384 || im.height > 16384)
    throw std::runtime_error(path + ": unsupported image size " + std::to_string(im.width) + "x" +
                             std::to_string(im.height));
  if (maxval != 255)
    throw std::runtime_error(path + ": maxval " + std::to_string(maxval) + "; only 8-bit images (maxval 255) are "
                             "supported (re-save it as 8-bit)");
  im.px.resize(static_cast<size_t>(im.width) * im.height * im.channels);
  if (magic[1] == '5' || magic[1] == '6') {
    f.get();  // the single whitespace byte after maxval
    if (!f.read(reinterpret_cast<char*>(im.px.data()), static_cast<std::streamsize>(im.px.size())))
      throw std::runtime_error(path + ": truncated image data");
  } else {
    for (auto& p : im.px) {
      const int v = detail::pnm_token(f, path);
      if (v > 255) throw std::runtime_error(path + ": sample value above maxval");
      p = static_cast<uint8_t>(v);
    }
  }
  return im;
}

// Pillow's conversions: RGB->L with ITU-R 601-2 luma in 16-bit fixed point; L->RGB replicates.
inline Image convert_channels(const Image& in, int channels) {
  if (in.channels == channels) return in;
  Image out;
  out.width = in.width;
  out.height = in.height;
  out.channels = channels;
  const size_t n = static_cast<size_t>(in.width) * in.height;
  out.px.resize(n * channels);
  for (size_t i = 0; i < n; ++i) {
    if (channels == 1) {
      const uint8_t* rgb = &in.px[i * 3];
      out.px[i] = static_cast<uint8_t>((rgb[0] * 19595 + rgb[1] * 38470 + rgb[2] * 7471 + 0x8000) >> 16);
    } else {
      out.px[i * 3] = out.px[i * 3 + 1] = out.px[i * 3 + 2] = in.px[i];
    }
  }
  return out;
}

namespace detail {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's fixed-point precision for 8-bit images

struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;  // per output pixel: first input index, count
  std::vector<int32_t> k;   // per output pixel: ksize fixed-point weights
};

// Pillow's precompute_coeffs + normalize_coeffs_8bpc with the bilinear (triangle, support 1) filter.
inline Coeffs bilinear_coeffs(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = 1.0 * filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(out_size * 2);
  c.k.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> w(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      double t = (x + xmin - center + 0.5) * ss;
      if (t < 0) t = -t;
      w[x] = t < 1.0 ? 1.0 - t : 0.0;
      ww += w[x];
    }
    for (int x = 0; x < xmax; ++x) {
      const double v = ww != 0.0 ? w[x] / ww : w[x];
      c.k[static_cast<size_t>(xx) * c.ksize + x] =
          static_cast<int32_t>(v < 0 ? -0.5 + v * (1 << kPrecisionBits) : 0.5 + v * (1 << kPrecisionBits));
    }
    c.bounds[xx * 2] = xmin;
    c.bounds[xx * 2 + 1] = xmax;
  }
  return c;
}

inline uint8_t clip8(int32_t acc) {
  const int32_t v = acc >> kPrecisionBits;  // arithmetic shift, as in Pillow
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

inline Image resample_axis(const Image& in, int out_size, bool horizontal) {
  const Coeffs c = bilinear_coeffs(horizontal ? in.width : in.height, out_size);
  Image out;
  out.channels = in.channels;
  out.width = horizontal ? out_size : in.width;
  out.height = horizontal ? in.height : out_size;
  out.px.resize(static_cast<size_t>(out.width) * out.height * out.channels);
  for (int y = 0; y < out.height; ++y)
    for (int x = 0; x < out.width; ++x) {
      const int o = horizontal ? x : y;
      const int lo = c.bounds[o * 2], n = c.bounds[o * 2 + 1];
      const int32_t* k = &c.k[static_cast<size_t>(o) * c.ksize];
      for (int ch = 0; ch < in.channels; ++ch) {
        int32_t acc = 1 << (kPrecisionBits - 1);
        for (int i = 0; i < n; ++i)
          acc += (horizontal ? in.at(y, lo + i, ch) : in.at(lo + i, x, ch)) * k[i];
        out.px[(static_cast<size_t>(y) * out.width + x) * out.channels + ch] = clip8(acc);
      }
    }
  return out;
}

}  // namespace detail

// Image.resize((w, h), BILINEAR): horizontal pass first, each pass only when that size changes.
inline Image resize_bilinear(const Image& in, int w, int h) {
  Image cur = in;
  if (w != cur.width) cur = detail::resample_axis(cur, w, true);
  if (h != cur.height) cur = detail::resample_axis(cur, h, false);
  return cur;
}

// The spec's steps up to the pixels (decode, resize, crop): an H x W x C uint8 image.
inline Image prepare_pixels(const Image& decoded, const Preprocessing& p, const std::string& path) {
  Image im = convert_channels(decoded, p.channels);
  if (p.resize > 0) {
    // Python: k = resize / min(w, h); round(w * k) — round half to even, which nearbyint does by default.
    const double k = static_cast<double>(p.resize) / std::min(im.width, im.height);
    const int w = std::max(1, static_cast<int>(std::nearbyint(im.width * k)));
    const int h = std::max(1, static_cast<int>(std::nearbyint(im.height * k)));
    im = resize_bilinear(im, w, h);
  }
  if (p.crop_h > 0) {
    if (p.crop_h > im.height || p.crop_w > im.width)
      throw std::runtime_error(path + ": " + std::to_string(im.width) + "x" + std::to_string(im.height) +
                               " image is smaller than the " + std::to_string(p.crop_w) + "x" +
                               std::to_string(p.crop_h) + " crop");
    const int left = (im.width - p.crop_w) / 2, top = (im.height - p.crop_h) / 2;
    Image out;
    out.width = p.crop_w;
    out.height = p.crop_h;
    out.channels = im.channels;
    out.px.resize(static_cast<size_t>(out.width) * out.height * out.channels);
    for (int y = 0; y < out.height; ++y)
      for (int x = 0; x < out.width; ++x)
        for (int ch = 0; ch < out.channels; ++ch)
          out.px[(static_cast<size_t>(y) * out.width + x) * out.channels + ch] = im.at(top + y, left + x, ch);
    im = std::move(out);
  }
  return im;
}

// Scale, normalize, lay out, cast: the bytes of one sample (no batch axis). float32 arithmetic in the same
// order as numpy's (x / 255 then (x - mean) / std, each rounded to float32), so the values are identical.
inline std::vector<uint8_t> to_tensor_bytes(const Image& im, const Preprocessing& p) {
  const size_t hw = static_cast<size_t>(im.width) * im.height;
  const bool nchw = p.layout == "NCHW";
  auto index = [&](int y, int x, int c) {
    return nchw ? static_cast<size_t>(c) * hw + static_cast<size_t>(y) * im.width + x
                : (static_cast<size_t>(y) * im.width + x) * im.channels + c;
  };
  if (p.dtype == "uint8") {
    std::vector<uint8_t> out(hw * im.channels);
    for (int y = 0; y < im.height; ++y)
      for (int x = 0; x < im.width; ++x)
        for (int c = 0; c < im.channels; ++c) out[index(y, x, c)] = im.at(y, x, c);
    return out;
  }
  std::vector<float> out(hw * im.channels);
  for (int c = 0; c < im.channels; ++c) {
    const float m = p.mean.size() == 1 ? p.mean[0] : p.mean[c];
    const float s = p.std.size() == 1 ? p.std[0] : p.std[c];
    for (int y = 0; y < im.height; ++y)
      for (int x = 0; x < im.width; ++x) {
        const float v = static_cast<float>(im.at(y, x, c)) / 255.0f;
        out[index(y, x, c)] = (v - m) / s;
      }
  }
  std::vector<uint8_t> bytes(out.size() * sizeof(float));
  std::memcpy(bytes.data(), out.data(), bytes.size());
  return bytes;
}

}  // namespace edgeq
