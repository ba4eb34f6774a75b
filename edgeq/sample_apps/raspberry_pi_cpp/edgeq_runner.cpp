// edgeq_runner: run an ExecuTorch .pte from an edgeq export, on a Raspberry Pi or any Linux (x86-64, aarch64).
//
// Torch-free: links only the executorch wheel's C++ runtime (libexecutorch.so, XNNPACK backend, kernels), plus
// ExecuTorch's llama::custom_sdpa / llama::update_cache kernels compiled in from llama_ops/ (the LLM .pte).
// Two modes (README.md has the details):
//   edgeq_runner EXPORT_DIR [--artifact NAME] (--image F.ppm ... | --inputs IN.bin) [--outputs OUT.bin] ...
//     The app: reads EXPORT_DIR/edgeq.json, picks the INT8 .pte (or NAME), checks its sha256, takes the input
//     names, shapes, dtypes and preprocessing from the manifest, checks them against the program's method meta,
//     preprocesses PPM/PGM images exactly as edgeq did, runs every sample and prints the top-1 per sample.
//   edgeq_runner MODEL.pte INPUTS.bin OUTPUTS.bin [--warmup N] [--repeats N]
//     The validation runner edgeq's host-cpp, emulator and ssh runners call: inputs in program order, batch 1.
// The tensor file format is documented in README.md (and implemented in edgeq/validate/device/tensor_io.py).
// Every input tensor holds N samples on axis 0; the program runs on chunks of its own (fixed) batch size and
// the outputs are concatenated on axis 0. Latency: median of --repeats timed runs of the first chunk.
// The last stdout line is `EDGEQ_RESULT {json}`; errors go to stderr with a non-zero exit code.

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

#include "edgeq_image.h"
#include "edgeq_json.h"
#include "edgeq_npz.h"
#include "edgeq_sha256.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <sys/stat.h>
#include <vector>

#ifndef EDGEQ_EXECUTORCH_VERSION
#define EDGEQ_EXECUTORCH_VERSION "unknown"
#endif

using executorch::aten::ScalarType;
using executorch::extension::Module;
using executorch::runtime::EValue;
namespace json = edgeq::json;
using edgeq::Image;
using edgeq::Preprocessing;
using edgeq::prepare_pixels;
using edgeq::read_pnm;
using edgeq::sha256_file;
using edgeq::to_tensor_bytes;

namespace {

constexpr char kMagic[8] = {'E', 'D', 'G', 'E', 'Q', 'T', '0', '1'};

// File dtype codes (stable on disk; see README.md).
struct DType {
  uint32_t code;
  ScalarType scalar;
  size_t size;
  const char* name;
};
const DType kDTypes[] = {
    {0, ScalarType::Float, 4, "float32"}, {1, ScalarType::Long, 8, "int64"}, {2, ScalarType::Int, 4, "int32"},
    {3, ScalarType::Byte, 1, "uint8"},    {4, ScalarType::Char, 1, "int8"},  {5, ScalarType::Bool, 1, "bool"},
    {6, ScalarType::Half, 2, "float16"},  {7, ScalarType::Double, 8, "float64"},
};

const DType& dtype_by_code(uint32_t code) {
  for (const auto& d : kDTypes)
    if (d.code == code) return d;
  throw std::runtime_error("unknown dtype code " + std::to_string(code));
}

const DType* dtype_by_name(const std::string& name) {
  for (const auto& d : kDTypes)
    if (name == d.name) return &d;
  return nullptr;
}

const DType& dtype_by_scalar(ScalarType s) {
  for (const auto& d : kDTypes)
    if (d.scalar == s) return d;
  throw std::runtime_error("unsupported scalar type " + std::to_string(static_cast<int>(s)));
}

struct HostTensor {
  std::string name;
  uint32_t dtype = 0;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;
  size_t row_bytes() const { return shape.empty() || shape[0] == 0 ? 0 : data.size() / shape[0]; }
};

// Little-endian reads/writes; every supported target (x86-64, aarch64) is little-endian.
template <typename T>
T read_pod(std::ifstream& f, const std::string& what) {
  T v{};
  if (!f.read(reinterpret_cast<char*>(&v), sizeof(T))) throw std::runtime_error("truncated tensor file (" + what + ")");
  return v;
}

std::vector<HostTensor> read_tensors(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  char magic[8];
  if (!f.read(magic, 8) || std::memcmp(magic, kMagic, 8) != 0)
    throw std::runtime_error(path + " is not an edgeq tensor file (bad magic)");
  const auto count = read_pod<uint32_t>(f, "count");
  std::vector<HostTensor> out(count);
  for (auto& t : out) {
    const auto name_len = read_pod<uint32_t>(f, "name length");
    t.name.resize(name_len);
    if (name_len && !f.read(&t.name[0], name_len)) throw std::runtime_error("truncated tensor file (name)");
    t.dtype = read_pod<uint32_t>(f, "dtype");
    const auto ndim = read_pod<uint32_t>(f, "ndim");
    size_t numel = 1;
    for (uint32_t i = 0; i < ndim; ++i) {
      t.shape.push_back(read_pod<int64_t>(f, "shape"));
      numel *= static_cast<size_t>(t.shape.back());
    }
    const auto nbytes = read_pod<uint64_t>(f, "nbytes");
    if (nbytes != numel * dtype_by_code(t.dtype).size)
      throw std::runtime_error("tensor '" + t.name + "': byte count does not match shape and dtype");
    t.data.resize(nbytes);
    if (nbytes && !f.read(reinterpret_cast<char*>(t.data.data()), nbytes))
      throw std::runtime_error("truncated tensor file (data of '" + t.name + "')");
  }
  return out;
}

template <typename T>
void write_pod(std::ofstream& f, T v) {
  f.write(reinterpret_cast<const char*>(&v), sizeof(T));
}

void write_tensors(const std::string& path, const std::vector<HostTensor>& ts) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw std::runtime_error("cannot write " + path);
  f.write(kMagic, 8);
  write_pod<uint32_t>(f, static_cast<uint32_t>(ts.size()));
  for (const auto& t : ts) {
    write_pod<uint32_t>(f, static_cast<uint32_t>(t.name.size()));
    f.write(t.name.data(), t.name.size());
    write_pod<uint32_t>(f, t.dtype);
    write_pod<uint32_t>(f, static_cast<uint32_t>(t.shape.size()));
    for (auto d : t.shape) write_pod<int64_t>(f, d);
    write_pod<uint64_t>(f, t.data.size());
    f.write(reinterpret_cast<const char*>(t.data.data()), t.data.size());
  }
  if (!f) throw std::runtime_error("failed writing " + path);
}

int parse_int(const char* s, const char* flag) {
  try {
    int v = std::stoi(s);
    if (v < 0) throw std::invalid_argument("negative");
    return v;
  } catch (const std::exception&) {
    throw std::runtime_error(std::string(flag) + " needs a non-negative integer, got '" + s + "'");
  }
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Errors the user can fix (bad input, a manifest that does not describe the file): exit 2 in the app mode.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What the loaded program declares for one input (its method meta): the ground truth every check refers to.
struct ProgramInput {
  std::vector<int64_t> sizes;
  const DType* dtype;
};

struct Program {
  std::unique_ptr<Module> module;
  std::vector<ProgramInput> inputs;
  double load_ms = 0;
};

Program load_program(const std::string& path) {
  Program p;
  const auto t_load = std::chrono::steady_clock::now();
  p.module = std::make_unique<Module>(path, Module::LoadMode::File);
  if (p.module->load_forward() != executorch::runtime::Error::Ok)
    throw std::runtime_error("cannot load method 'forward' from " + path +
                             " (corrupt or truncated .pte, or a backend/kernel missing from this build)");
  p.load_ms = ms_since(t_load);
  auto meta = p.module->method_meta("forward");
  if (!meta.ok()) throw std::runtime_error("no method metadata for 'forward'");
  for (size_t i = 0; i < meta->num_inputs(); ++i) {
    auto info = meta->input_tensor_meta(i);
    if (!info.ok()) throw std::runtime_error("input " + std::to_string(i) + " of " + path + " is not a tensor");
    ProgramInput in;
    in.sizes.assign(info->sizes().begin(), info->sizes().end());
    in.dtype = &dtype_by_scalar(info->scalar_type());
    p.inputs.push_back(in);
  }
  return p;
}

// Runs every sample through the program in chunks of `batch` rows (the program's fixed batch). A short last
// chunk is padded with copies of its last row and the padding's outputs are dropped, so N need not divide.
struct Runner {
  Module& module;
  std::vector<HostTensor>& inputs;  // program order, N rows each
  int64_t batch;
  std::vector<executorch::extension::TensorPtr> holders;
  std::vector<std::vector<uint8_t>> padded;

  int64_t rows() const { return inputs[0].shape[0]; }

  std::vector<EValue> run_chunk(int64_t start) {
    holders.clear();
    padded.clear();
    const int64_t valid = std::min(batch, rows() - start);
    std::vector<EValue> args;
    for (auto& t : inputs) {
      std::vector<executorch::aten::SizesType> sizes(t.shape.begin(), t.shape.end());
      sizes[0] = static_cast<executorch::aten::SizesType>(batch);
      uint8_t* base = t.data.data() + start * t.row_bytes();
      if (valid < batch) {
        padded.emplace_back(base, base + valid * t.row_bytes());
        for (int64_t r = valid; r < batch; ++r)
          padded.back().insert(padded.back().end(), base + (valid - 1) * t.row_bytes(), base + valid * t.row_bytes());
        base = padded.back().data();
      }
      // The runtime only reads inputs: a view of the caller's rows, no copy.
      holders.push_back(executorch::extension::from_blob(base, sizes, dtype_by_code(t.dtype).scalar));
      args.emplace_back(*holders.back());
    }
    auto res = module.forward(args);
    if (!res.ok())
      throw std::runtime_error("forward failed with error code " + std::to_string(static_cast<int>(res.error())));
    return std::move(res.get());
  }

  std::vector<HostTensor> run_all() {
    std::vector<HostTensor> outputs;
    for (int64_t s = 0; s < rows(); s += batch) {
      const int64_t valid = std::min(batch, rows() - s);
      auto outs = run_chunk(s);
      if (s == 0) outputs.resize(outs.size());
      for (size_t k = 0; k < outs.size(); ++k) {
        if (!outs[k].isTensor()) throw std::runtime_error("output " + std::to_string(k) + " is not a tensor");
        const auto& t = outs[k].toTensor();
        auto& o = outputs[k];
        if (s == 0) {
          o.name = "output_" + std::to_string(k);
          o.dtype = dtype_by_scalar(t.scalar_type()).code;
          o.shape.assign(t.sizes().begin(), t.sizes().end());
          if (o.shape.empty()) o.shape.push_back(1);
          o.shape[0] = 0;
        }
        const auto* p = static_cast<const uint8_t*>(t.const_data_ptr());
        size_t keep = t.nbytes();
        int64_t kept_rows = t.dim() ? t.size(0) : 1;
        if (t.dim() && t.size(0) == batch && valid < batch) {  // drop the padding rows' outputs
          keep = t.nbytes() / batch * valid;
          kept_rows = valid;
        }
        o.data.insert(o.data.end(), p, p + keep);
        o.shape[0] += kept_rows;
      }
    }
    return outputs;
  }

  // Median and min of `repeats` timed runs of the first chunk after `warmup` untimed ones.
  std::pair<double, double> time(int warmup, int repeats) {
    for (int i = 0; i < warmup; ++i) run_chunk(0);
    std::vector<double> times;
    for (int i = 0; i < repeats; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      run_chunk(0);
      times.push_back(ms_since(t0));
    }
    if (times.empty()) return {-1, -1};
    std::sort(times.begin(), times.end());
    const size_t n = times.size();
    return {n % 2 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]), times.front()};
  }
};

int64_t check_rows(const std::vector<HostTensor>& inputs) {
  if (inputs.empty()) throw InputError("the input file holds no tensors");
  const int64_t n = inputs[0].shape.empty() ? 0 : inputs[0].shape[0];
  for (const auto& t : inputs)
    if (t.shape.empty() || t.shape[0] != n)
      throw InputError("every input needs the same number of samples on axis 0");
  if (n == 0) throw InputError("the input file holds 0 samples");
  return n;
}

std::string json_number(double v) {
  if (v < 0) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6f", v);
  return buf;
}

void print_result(double median, double min, double load_ms, int64_t n, int repeats, int warmup, size_t outputs,
                  const std::string& extra) {
  std::printf("EDGEQ_RESULT {\"latency_ms_median\": %s, \"latency_ms_min\": %s, \"load_ms\": %.3f, "
              "\"samples\": %lld, \"repeats\": %d, \"warmup\": %d, \"outputs\": %zu, "
              "\"runtime\": \"executorch-cpp %s\"%s}\n",
              json_number(median).c_str(), json_number(min).c_str(), load_ms, static_cast<long long>(n), repeats,
              warmup, outputs, EDGEQ_EXECUTORCH_VERSION, extra.c_str());
}

// --- validation mode: MODEL.pte INPUTS.bin OUTPUTS.bin (the contract edgeq's runners rely on) ---------------

int validation_main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s MODEL.pte INPUTS.bin OUTPUTS.bin [--warmup N] [--repeats N]\n"
                         "       %s EXPORT_DIR [--artifact NAME] (--image F.ppm ... | --inputs IN.bin) [...]\n",
                 argv[0], argv[0]);
    return 2;
  }
  const std::string model_path = argv[1], in_path = argv[2], out_path = argv[3];
  try {
    int warmup = 3, repeats = 20;
    for (int i = 4; i < argc; ++i) {
      const std::string a = argv[i];
      if ((a == "--warmup" || a == "--repeats") && i + 1 < argc) {
        (a == "--warmup" ? warmup : repeats) = parse_int(argv[++i], a.c_str());
      } else {
        throw std::runtime_error("unknown argument '" + a + "'");
      }
    }
    auto inputs = read_tensors(in_path);
    const int64_t n = check_rows(inputs);
    Program prog = load_program(model_path);
    if (prog.inputs.size() != inputs.size())
      throw std::runtime_error("the model takes " + std::to_string(prog.inputs.size()) + " inputs, the file holds " +
                               std::to_string(inputs.size()));
    // The .pte fixes each input's dtype; refuse a mismatch instead of reinterpreting bytes.
    for (size_t i = 0; i < inputs.size(); ++i)
      if (prog.inputs[i].dtype->code != inputs[i].dtype)
        throw std::runtime_error("input '" + inputs[i].name + "' is " + dtype_by_code(inputs[i].dtype).name +
                                 ", the model expects " + prog.inputs[i].dtype->name);
    // edgeq exports its .pte programs with batch 1; validation data runs one sample at a time.
    Runner runner{*prog.module, inputs, 1, {}, {}};
    const auto outputs = runner.run_all();
    write_tensors(out_path, outputs);
    const auto t = runner.time(warmup, std::max(1, repeats));
    print_result(t.first, t.second, prog.load_ms, n, std::max(1, repeats), warmup, outputs.size(), "");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "edgeq_runner: error: %s\n", e.what());
    return 1;
  }
}

// --- app mode: EXPORT_DIR, everything from edgeq.json -------------------------------------------------------

// One input as the manifest describes the artifact's file (details.io) — or the source signature in a manifest
// written before details.io existed. Shape entries are ints (fixed) or strings such as "batch" (dynamic).
struct ManifestInput {
  std::string name, dtype;
  std::vector<const json::Value*> shape;
  const json::Value* preprocessing = nullptr;
};

const json::Value& pick_artifact(const json::Value& m, const std::string& wanted) {
  const auto& arts = m.at("artifacts", "edgeq.json").arr("edgeq.json: artifacts");
  std::string ptes;
  for (const auto& a : arts)
    if (a.at("format", "artifact").str("artifact.format") == "pte")
      ptes += (ptes.empty() ? "" : ", ") + a.at("name", "artifact").str("artifact.name");
  if (!wanted.empty()) {
    for (const auto& a : arts) {
      if (a.at("name", "artifact").str("artifact.name") != wanted) continue;
      const std::string fmt = a.at("format", "artifact").str("artifact.format");
      if (fmt != "pte")
        throw InputError("artifact '" + wanted + "' is a ." + fmt + " file; this app runs ExecuTorch .pte programs" +
                         (fmt == "onnx" ? " (run .onnx with sample_apps/raspberry_pi_python/edgeq_app.py)" : "") +
                         (ptes.empty() ? std::string() : "; .pte artifacts here: " + ptes));
      return a;
    }
    throw InputError("edgeq.json has no artifact named '" + wanted + "'" +
                     (ptes.empty() ? std::string(" and no .pte artifact") : "; .pte artifacts: " + ptes));
  }
  // The INT8 candidate first (what the export ships), then any candidate, then the float baseline.
  const json::Value* best = nullptr;
  int best_rank = 99;
  for (const auto& a : arts) {
    if (a.at("format", "artifact").str("artifact.format") != "pte") continue;
    const std::string role = a.at("role", "artifact").str("artifact.role");
    const std::string precision = a.at("precision", "artifact").str("artifact.precision");
    const int rank = role == "candidate" ? (precision.rfind("int8", 0) == 0 ? 0 : 1) : 2;
    if (rank < best_rank) best = &a, best_rank = rank;
  }
  if (!best)
    throw InputError("the export has no .pte artifact (was it exported with --format onnx? run .onnx with "
                     "sample_apps/raspberry_pi_python/edgeq_app.py)");
  return *best;
}

std::vector<ManifestInput> manifest_inputs(const json::Value& m, const json::Value& art) {
  const json::Value* io = nullptr;
  if (const auto* d = art.find("details"))
    if (const auto* i = d->find("io"))
      if (const auto* ins = i->find("inputs"); ins && ins->is_array() && !ins->array.empty()) io = ins;
  if (!io) io = &m.at("signature", "edgeq.json").at("inputs", "edgeq.json: signature");
  std::vector<ManifestInput> out;
  for (const auto& spec : io->arr("edgeq.json: inputs")) {
    ManifestInput in;
    in.name = spec.at("name", "input").str("input.name");
    in.dtype = spec.at("dtype", "input '" + in.name + "'").str("input.dtype");
    for (const auto& d : spec.at("shape", "input '" + in.name + "'").arr("input.shape")) in.shape.push_back(&d);
    const auto* pp = spec.find("preprocessing");
    in.preprocessing = pp && pp->is_object() ? pp : nullptr;
    out.push_back(in);
  }
  return out;
}

std::string dim_str(const json::Value* d) { return d->is_int() ? std::to_string(d->int64("dim")) : "'" + d->string + "'"; }

std::string manifest_shape_str(const ManifestInput& in) {
  std::string s = "[";
  for (size_t i = 0; i < in.shape.size(); ++i) s += (i ? ", " : "") + dim_str(in.shape[i]);
  return s + "]";
}

// The manifest and the program must describe the same inputs. Dynamic dims in the manifest (a string such as
// "batch") take the program's fixed size — the android-arm64 case: the source signature says dynamic batch,
// the shipped program is fixed at 1 — as the Python app does; a fixed size that disagrees is an error naming both.
std::vector<int64_t> resolve_shape(const ManifestInput& in, const ProgramInput& prog, const std::string& file) {
  const std::string both = "edgeq.json says input '" + in.name + "' is " + in.dtype + " " + manifest_shape_str(in) +
                           ", the program in " + file + " takes " + prog.dtype->name + " " + shape_str(prog.sizes);
  if (in.dtype != prog.dtype->name) throw InputError(both + " (dtype differs)");
  if (in.shape.size() != prog.sizes.size()) throw InputError(both + " (rank differs)");
  for (size_t d = 0; d < in.shape.size(); ++d)
    if (in.shape[d]->is_int() && in.shape[d]->int64("dim") != prog.sizes[d])
      throw InputError(both + " (dim " + std::to_string(d) + " differs)");
  return prog.sizes;
}

Preprocessing read_preprocessing(const json::Value& pp, const std::string& name) {
  const std::string w = "input '" + name + "' preprocessing";
  Preprocessing p;
  if (const auto* r = pp.find("resize"); r && !r->is_null()) p.resize = static_cast<int>(r->int64(w + ".resize"));
  if (const auto* c = pp.find("crop"); c && !c->is_null()) {
    const auto& hw = c->arr(w + ".crop");
    if (hw.size() != 2) throw InputError(w + ".crop needs [height, width]");
    p.crop_h = static_cast<int>(hw[0].int64(w + ".crop"));
    p.crop_w = static_cast<int>(hw[1].int64(w + ".crop"));
  }
  auto floats = [&](const char* key) {
    std::vector<float> v;
    for (const auto& x : pp.at(key, w).arr(w + "." + key)) v.push_back(static_cast<float>(x.num(w + "." + key)));
    return v;
  };
  p.mean = floats("mean");
  p.std = floats("std");
  p.layout = pp.at("layout", w).str(w + ".layout");
  p.dtype = pp.at("dtype", w).str(w + ".dtype");
  p.channels = static_cast<int>(pp.at("channels", w).int64(w + ".channels"));
  if (p.layout != "NCHW" && p.layout != "NHWC") throw InputError(w + ": unknown layout '" + p.layout + "'");
  if (p.dtype != "float32" && p.dtype != "uint8") throw InputError(w + ": unknown dtype '" + p.dtype + "'");
  if (p.channels != 1 && p.channels != 3) throw InputError(w + ": channels must be 1 or 3");
  for (const auto* v : {&p.mean, &p.std})
    if (v->size() != 1 && v->size() != static_cast<size_t>(p.channels))
      throw InputError(w + ": mean/std need 1 or " + std::to_string(p.channels) + " values");
  return p;
}

HostTensor images_to_tensor(const std::vector<std::string>& files, const ManifestInput& in,
                            const std::vector<int64_t>& shape, const DType& dtype) {
  if (!in.preprocessing)
    throw InputError("edgeq.json records no preprocessing for input '" + in.name +
                     "' (the export was not made from an image folder); pass --inputs FILE.bin instead");
  const Preprocessing p = read_preprocessing(*in.preprocessing, in.name);
  if (p.dtype != dtype.name)
    throw InputError("the recorded preprocessing makes " + p.dtype + " but the program's input '" + in.name +
                     "' is " + dtype.name);
  if (shape.size() != 4)
    throw InputError("input '" + in.name + "' has shape " + shape_str(shape) + "; images need 4 dimensions");
  const bool nchw = p.layout == "NCHW";
  const int64_t c = nchw ? shape[1] : shape[3], h = nchw ? shape[2] : shape[1], w = nchw ? shape[3] : shape[2];
  if (c != p.channels)
    throw InputError("the recorded preprocessing makes " + std::to_string(p.channels) + " channel(s) (" + p.layout +
                     ") but input '" + in.name + "' has shape " + shape_str(shape));
  HostTensor t;
  t.name = in.name;
  t.dtype = dtype.code;
  t.shape = shape;
  t.shape[0] = static_cast<int64_t>(files.size());
  for (const auto& f : files) {
    Image im;
    try {
      im = prepare_pixels(read_pnm(f), p, f);
    } catch (const std::runtime_error& e) {  // an unreadable or too small image: the user's input, exit 2
      throw InputError(e.what());
    }
    if (im.height != h || im.width != w)
      throw InputError(f + " is " + std::to_string(im.width) + "x" + std::to_string(im.height) +
                       " after the recorded resize/crop, but input '" + in.name + "' takes " + std::to_string(w) +
                       "x" + std::to_string(h) + " (" + shape_str(shape) + ", " + p.layout + ")");
    const auto bytes = to_tensor_bytes(im, p);
    t.data.insert(t.data.end(), bytes.begin(), bytes.end());
  }
  return t;
}

// Tensor-file inputs matched by name (a `labels` tensor, as edgeq stores with its validation data, is not an
// input: it gives an accuracy line).
// An .npz of the export (np.savez) as tensors; dtypes by numpy's descr.
std::vector<HostTensor> npz_tensors(const std::string& path) {
  static const std::pair<const char*, uint32_t> kDescr[] = {{"<f4", 0}, {"<i8", 1}, {"<i4", 2}, {"|u1", 3},
                                                           {"|i1", 4}, {"|b1", 5}, {"<f2", 6}, {"<f8", 7}};
  std::vector<HostTensor> out;
  for (auto& kv : edgeq::read_npz(path)) {
    HostTensor t;
    t.name = kv.first;
    t.shape = kv.second.shape;
    t.data = std::move(kv.second.data);
    bool known = false;
    for (const auto& d : kDescr)
      if (kv.second.descr == d.first) t.dtype = d.second, known = true;
    if (!known) throw InputError(path + ": array '" + t.name + "' has unsupported dtype " + kv.second.descr);
    out.push_back(std::move(t));
  }
  return out;
}

std::vector<HostTensor> file_to_inputs(const std::string& path, const std::vector<ManifestInput>& specs,
                                       const std::vector<std::vector<int64_t>>& shapes, const Program& prog,
                                       HostTensor* labels) {
  const bool npz = path.size() > 4 && path.compare(path.size() - 4, 4, ".npz") == 0;
  std::vector<HostTensor> loaded;
  try {
    loaded = npz ? npz_tensors(path) : read_tensors(path);
  } catch (const InputError&) {
    throw;
  } catch (const std::exception& e) {
    throw InputError(e.what());
  }
  std::vector<HostTensor> out;
  for (size_t i = 0; i < specs.size(); ++i) {
    auto it = std::find_if(loaded.begin(), loaded.end(), [&](const HostTensor& t) { return t.name == specs[i].name; });
    if (it == loaded.end()) {
      std::string have;
      for (const auto& t : loaded) have += (have.empty() ? "" : ", ") + t.name;
      throw InputError(path + " has no tensor named '" + specs[i].name + "' (it holds: " + have + ")");
    }
    std::vector<int64_t> want = shapes[i];
    bool ok = it->shape.size() == want.size();
    for (size_t d = 1; ok && d < want.size(); ++d) ok = it->shape[d] == want[d];
    if (!ok) {
      want[0] = -1;
      throw InputError("tensor '" + it->name + "' in " + path + " has shape " + shape_str(it->shape) +
                       "; the program takes " + shape_str(shapes[i]) + " (first axis = samples)");
    }
    if (it->dtype != prog.inputs[i].dtype->code)
      throw InputError("tensor '" + it->name + "' in " + path + " is " + dtype_by_code(it->dtype).name +
                       ", the program takes " + prog.inputs[i].dtype->name + " (no silent casts)");
    out.push_back(*it);
  }
  for (const auto& t : loaded)
    if (t.name == "labels") *labels = t;
  return out;
}

// A file the manifest lists ({path, sha256}), checked like the artifact: a stale copy is caught before use.
std::string export_file(const std::string& dir, const json::Value& entry, const std::string& what) {
  const std::string rel = entry.at("path", what).str(what + ".path");
  if (rel.empty() || rel[0] == '/' || rel.find("..") != std::string::npos)
    throw InputError(what + " path '" + rel + "' is outside the export folder");
  const std::string path = dir + "/" + rel;
  if (sha256_file(path) != entry.at("sha256", what).str(what + ".sha256"))
    throw InputError(path + " does not match edgeq.json (sha256); re-copy the export folder");
  return path;
}

struct RefComparison {
  double cosine_min = 1, top1 = -1, max_abs_diff = 0;
};

// edgeq.validate.metrics.compare's cosine (per sample, over all outputs), top-1 agreement (first output, when it
// looks like scores: [N, K>1]) and max |diff|, for the outputs the reference names.
RefComparison compare_to_reference(const std::vector<HostTensor>& ref, const std::vector<HostTensor>& outputs) {
  std::vector<std::pair<const HostTensor*, const HostTensor*>> pairs;
  for (const auto& o : outputs)
    for (const auto& r : ref)
      if (r.name == o.name) {
        if (r.shape != o.shape || r.dtype != 0 || o.dtype != 0)
          throw std::runtime_error("output '" + o.name + "' is " + shape_str(o.shape) + ", the reference " +
                                   shape_str(r.shape) + " (or not float32)");
        pairs.emplace_back(&r, &o);
      }
  if (pairs.empty()) throw std::runtime_error("the reference outputs share no name with the program's outputs");
  RefComparison c;
  const int64_t n = pairs[0].first->shape[0];
  for (int64_t s = 0; s < n; ++s) {
    double dot = 0, rr = 0, oo = 0;
    for (const auto& p : pairs) {
      const size_t per = p.first->data.size() / 4 / static_cast<size_t>(n);
      const float* r = reinterpret_cast<const float*>(p.first->data.data()) + s * per;
      const float* o = reinterpret_cast<const float*>(p.second->data.data()) + s * per;
      for (size_t k = 0; k < per; ++k) {
        dot += double(r[k]) * o[k], rr += double(r[k]) * r[k], oo += double(o[k]) * o[k];
        c.max_abs_diff = std::max(c.max_abs_diff, std::abs(double(r[k]) - o[k]));
      }
    }
    const double cos = rr == 0 && oo == 0 ? 1.0 : (rr > 0 && oo > 0 ? dot / (std::sqrt(rr) * std::sqrt(oo)) : 0.0);
    c.cosine_min = std::min(c.cosine_min, cos);
  }
  const HostTensor& r0 = *pairs[0].first;
  const HostTensor& o0 = *pairs[0].second;
  if (r0.shape.size() == 2 && r0.shape[1] > 1) {
    const int64_t k = r0.shape[1];
    const float* r = reinterpret_cast<const float*>(r0.data.data());
    const float* o = reinterpret_cast<const float*>(o0.data.data());
    int64_t same = 0;
    for (int64_t s = 0; s < n; ++s)
      same += (std::max_element(r + s * k, r + (s + 1) * k) - (r + s * k)) ==
              (std::max_element(o + s * k, o + (s + 1) * k) - (o + s * k));
    c.top1 = static_cast<double>(same) / n;
  }
  return c;
}

bool is_dir(const std::string& p) {
  struct stat st {};
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void app_usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s EXPORT_DIR [--artifact NAME] [--image F.ppm [G.pgm ...] | --inputs IN.bin|IN.npz]\n"
               "       [--outputs OUT.bin] [--dump-inputs IN.bin] [--allow-failed] [--warmup N] [--repeats N]\n",
               argv0);
}

int app_main(int argc, char** argv) {
  std::string dir = argv[1], artifact_name, inputs_path, outputs_path, dump_path;
  std::vector<std::string> images;
  bool allow_failed = false;
  int warmup = 0, repeats = 0;
  try {
    for (int i = 2; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw InputError(a + " needs a value");
        return argv[++i];
      };
      if (a == "--artifact") artifact_name = value();
      else if (a == "--image") {  // one or more files: `--image a.ppm b.ppm` and `--image a.ppm --image b.ppm`
        images.push_back(value());
        while (i + 1 < argc && std::strncmp(argv[i + 1], "--", 2) != 0) images.push_back(argv[++i]);
      }
      else if (a == "--inputs") inputs_path = value();
      else if (a == "--outputs") outputs_path = value();
      else if (a == "--dump-inputs") dump_path = value();
      else if (a == "--allow-failed") allow_failed = true;
      else if (a == "--warmup") warmup = parse_int(value().c_str(), "--warmup");
      else if (a == "--repeats") repeats = parse_int(value().c_str(), "--repeats");
      else throw InputError("unknown argument '" + a + "'");
    }
    if (!images.empty() && !inputs_path.empty()) {
      app_usage(argv[0]);
      throw InputError("give --image or --inputs, not both");
    }
    std::string manifest_path = dir;
    if (is_dir(dir)) manifest_path = dir + "/edgeq.json";
    else dir = dir.find('/') == std::string::npos ? "." : dir.substr(0, dir.rfind('/'));
    json::Value m;
    try {
      m = json::parse_file(manifest_path);
    } catch (const std::exception& e) {
      throw InputError(e.what());
    }
    if (const auto* schema = m.find("schema"); !schema || !schema->is_string() || schema->string != "edgeq.manifest")
      throw InputError(manifest_path + " is not an edgeq manifest (no \"schema\": \"edgeq.manifest\")");

    const json::Value& verdict = m.at("verdict", "edgeq.json");
    if (!verdict.at("passed", "edgeq.json: verdict").truthy() && !allow_failed) {
      std::fprintf(stderr, "edgeq_runner: this export FAILED its accuracy budget:\n");
      if (const auto* f = verdict.find("failures"); f && f->is_array())
        for (const auto& line : f->array) std::fprintf(stderr, "  %s\n", line.is_string() ? line.string.c_str() : "?");
      std::fprintf(stderr, "(--allow-failed runs it anyway)\n");
      return 1;
    }
    const json::Value& art = pick_artifact(m, artifact_name);
    const std::string name = art.at("name", "artifact").str("artifact.name");
    const std::string rel = art.at("path", "artifact '" + name + "'").str("artifact.path");
    if (rel.empty() || rel[0] == '/' || rel.find("..") != std::string::npos)
      throw InputError("artifact '" + name + "' has path '" + rel + "', outside the export folder");
    const std::string model_path = dir + "/" + rel;
    const std::string want_sha = art.at("sha256", "artifact '" + name + "'").str("artifact.sha256");
    if (sha256_file(model_path) != want_sha)
      throw InputError(model_path + " does not match edgeq.json (sha256); re-copy the export folder");

    const auto specs = manifest_inputs(m, art);
    Program prog = load_program(model_path);
    if (prog.inputs.size() != specs.size()) {
      std::string names;
      for (const auto& s : specs) names += (names.empty() ? "" : ", ") + s.name;
      throw InputError("edgeq.json lists " + std::to_string(specs.size()) + " input(s) (" + names + ") for " + name +
                       ", the program in " + rel + " takes " + std::to_string(prog.inputs.size()));
    }
    std::vector<std::vector<int64_t>> shapes;
    for (size_t i = 0; i < specs.size(); ++i) shapes.push_back(resolve_shape(specs[i], prog.inputs[i], rel));
    const int64_t batch = shapes[0].empty() ? 1 : shapes[0][0];
    for (const auto& s : shapes)
      if (s.empty() || s[0] != batch || batch < 1)
        throw InputError("the program's inputs do not share one batch size on axis 0; this app cannot feed them");

    std::vector<HostTensor> inputs;
    HostTensor labels;
    const json::Value* vdata = m.find("validation_data");
    const bool own_data = images.empty() && inputs_path.empty();
    if (!images.empty()) {
      if (specs.size() != 1)
        throw InputError("--image feeds one input; " + name + " takes " + std::to_string(specs.size()));
      inputs.push_back(images_to_tensor(images, specs[0], shapes[0], *prog.inputs[0].dtype));
    } else if (!inputs_path.empty()) {
      inputs = file_to_inputs(inputs_path, specs, shapes, prog, &labels);
    } else {  // the export's own validation samples, as the Python app does
      if (!vdata || !vdata->is_object())
        throw InputError("edgeq.json has no validation_data; give --image FILE or --inputs FILE.bin");
      inputs = file_to_inputs(export_file(dir, vdata->at("inputs", "validation_data"), "validation inputs"), specs,
                              shapes, prog, &labels);
    }
    const int64_t n = check_rows(inputs);
    if (!dump_path.empty()) write_tensors(dump_path, inputs);

    Runner runner{*prog.module, inputs, batch, {}, {}};
    auto outputs = runner.run_all();
    // Output names from the manifest (the artifact's details.io, else the signature); output_i otherwise.
    const json::Value* outs = nullptr;
    if (const auto* d = art.find("details"))
      if (const auto* i = d->find("io")) outs = i->find("outputs");
    if (!outs || !outs->is_array()) outs = m.at("signature", "edgeq.json").find("outputs");
    for (size_t k = 0; k < outputs.size(); ++k)
      if (outs && outs->is_array() && k < outs->array.size())
        if (const auto* nm = outs->array[k].find("name"); nm && nm->is_string()) outputs[k].name = nm->string;
    if (!outputs_path.empty()) write_tensors(outputs_path, outputs);

    const auto bytes = art.find("bytes");
    std::printf("%s (%lld bytes, %s) on %lld samples, batch %lld\n", name.c_str(),
                static_cast<long long>(bytes && bytes->is_int() ? bytes->int64("bytes") : -1),
                art.at("precision", "artifact").str("artifact.precision").c_str(), static_cast<long long>(n),
                static_cast<long long>(batch));
    // Top-1 of the first output, per sample (a classifier's class index).
    const HostTensor& o = outputs[0];
    std::vector<int64_t> top1;
    if (o.dtype == 0 && o.shape[0] == n) {
      const size_t per = o.data.size() / 4 / static_cast<size_t>(n);
      const float* v = reinterpret_cast<const float*>(o.data.data());
      for (int64_t s = 0; s < n; ++s)
        top1.push_back(std::max_element(v + s * per, v + (s + 1) * per) - (v + s * per));
      std::printf("top-1:");
      for (size_t s = 0; s < top1.size() && s < 20; ++s) std::printf(" %lld", static_cast<long long>(top1[s]));
      std::printf("%s\n", n > 20 ? " ..." : "");
    }
    std::string extra = ", \"artifact\": \"" + name + "\", \"batch\": " + std::to_string(batch);
    if (!top1.empty() && labels.dtype == 1 && labels.shape.size() == 1 && labels.shape[0] == n) {
      const auto* lab = reinterpret_cast<const int64_t*>(labels.data.data());
      int64_t hit = 0;
      for (int64_t s = 0; s < n; ++s) hit += top1[s] == lab[s];
      std::printf("accuracy: %.4f\n", static_cast<double>(hit) / n);
    }
    if (own_data && vdata->find("reference")) {
      // On the device itself: does this program reproduce what edgeq measured? Same reference, same metrics.
      const auto ref = npz_tensors(export_file(dir, vdata->at("reference", "validation_data"), "reference outputs"));
      const auto cmp = compare_to_reference(ref, outputs);
      std::printf("vs the float reference: cosine min %.6f", cmp.cosine_min);
      if (cmp.top1 >= 0) std::printf(", top-1 agreement %.4f", cmp.top1);
      std::printf(", max |diff| %.6g\n", cmp.max_abs_diff);
      if (const auto* vals = art.find("validations"); vals && vals->is_array())
        for (const auto& v : vals->array) {  // what edgeq measured for this file, per runner, to compare with
          const auto* who = v.find("runner");
          const auto* metrics = v.find("metrics");
          const auto* cos = metrics ? metrics->find("cosine_min") : nullptr;
          if (who && who->is_string() && cos && cos->type == json::Value::Type::Number)
            std::printf("  edgeq.json recorded on %s: cosine min %.6f\n", who->string.c_str(), cos->number);
        }
      char buf[160];
      std::snprintf(buf, sizeof buf, ", \"reference\": {\"cosine_min\": %.9f, \"top1_agreement\": %s, \"max_abs_diff\": %.9g}",
                    cmp.cosine_min, cmp.top1 >= 0 ? std::to_string(cmp.top1).c_str() : "null", cmp.max_abs_diff);
      extra += buf;
    }
    const auto t = runner.time(warmup, repeats);
    print_result(t.first, t.second, prog.load_ms, n, repeats, warmup, outputs.size(), extra);
    return 0;
  } catch (const InputError& e) {
    std::fprintf(stderr, "edgeq_runner: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "edgeq_runner: error: %s\n", e.what());
    return 3;
  }
}

}  // namespace

int main(int argc, char** argv) {
  // An export folder (or its edgeq.json) selects the app mode; anything else is the validation runner's call.
  if (argc >= 2) {
    const std::string first = argv[1];
    const bool json_file = first.size() >= 5 && first.compare(first.size() - 5, 5, ".json") == 0;
    if (is_dir(first) || json_file) return app_main(argc, argv);
  }
  return validation_main(argc, argv);
}
