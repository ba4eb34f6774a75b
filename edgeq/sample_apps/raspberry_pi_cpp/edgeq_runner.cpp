// edgeq_runner: run an ExecuTorch .pte on tensors read from an edgeq tensor file, write the outputs, time it.
//
// Torch-free: links only the executorch wheel's C++ runtime (libexecutorch.so, XNNPACK backend, kernels).
// Usage: edgeq_runner MODEL.pte INPUTS.bin OUTPUTS.bin [--warmup N] [--repeats N]
// The tensor file format is documented in README.md (and implemented in edgeq/validate/device/tensor_io.py).
// Every input tensor holds N samples on axis 0; the model (exported with batch 1) runs once per sample and
// the outputs are concatenated on axis 0. Latency: median of --repeats timed runs of sample 0 after --warmup.
// The last stdout line is `EDGEQ_RESULT {json}`; errors go to stderr with a non-zero exit code.

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#ifndef EDGEQ_EXECUTORCH_VERSION
#define EDGEQ_EXECUTORCH_VERSION "unknown"
#endif

using executorch::aten::ScalarType;
using executorch::extension::Module;
using executorch::runtime::EValue;

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

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s MODEL.pte INPUTS.bin OUTPUTS.bin [--warmup N] [--repeats N]\n", argv[0]);
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
    if (inputs.empty()) throw std::runtime_error("the input file holds no tensors");
    const int64_t n = inputs[0].shape.empty() ? 0 : inputs[0].shape[0];
    for (const auto& t : inputs)
      if (t.shape.empty() || t.shape[0] != n)
        throw std::runtime_error("every input needs the same number of samples on axis 0");
    if (n == 0) throw std::runtime_error("the input file holds 0 samples");

    const auto t_load = std::chrono::steady_clock::now();
    Module module(model_path, Module::LoadMode::File);
    if (module.load_forward() != executorch::runtime::Error::Ok)
      throw std::runtime_error("cannot load method 'forward' from " + model_path +
                               " (corrupt or truncated .pte, or a backend/kernel missing from this build)");
    const double load_ms = ms_since(t_load);
    auto meta = module.method_meta("forward");
    if (!meta.ok()) throw std::runtime_error("no method metadata for 'forward'");
    if (meta->num_inputs() != inputs.size())
      throw std::runtime_error("the model takes " + std::to_string(meta->num_inputs()) + " inputs, the file holds " +
                               std::to_string(inputs.size()));
    // The .pte fixes each input's dtype; refuse a mismatch instead of reinterpreting bytes.
    for (size_t i = 0; i < inputs.size(); ++i) {
      auto info = meta->input_tensor_meta(i);
      if (!info.ok()) throw std::runtime_error("input " + std::to_string(i) + " is not a tensor");
      const auto& want = dtype_by_scalar(info->scalar_type());
      if (want.code != inputs[i].dtype)
        throw std::runtime_error("input '" + inputs[i].name + "' is " + dtype_by_code(inputs[i].dtype).name +
                                 ", the model expects " + want.name);
    }

    // One sample: views of row `s` of every input with batch 1 (the runtime only reads them).
    std::vector<executorch::extension::TensorPtr> holders;
    auto run_sample = [&](int64_t s) {
      holders.clear();
      std::vector<EValue> args;
      for (auto& t : inputs) {
        std::vector<executorch::aten::SizesType> sizes(t.shape.begin(), t.shape.end());
        sizes[0] = 1;
        holders.push_back(executorch::extension::from_blob(t.data.data() + s * t.row_bytes(), sizes,
                                                           dtype_by_code(t.dtype).scalar));
        args.emplace_back(*holders.back());
      }
      auto res = module.forward(args);
      if (!res.ok())
        throw std::runtime_error("forward failed with error code " + std::to_string(static_cast<int>(res.error())));
      return std::move(res.get());
    };

    std::vector<HostTensor> outputs;
    for (int64_t s = 0; s < n; ++s) {
      auto outs = run_sample(s);
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
        o.data.insert(o.data.end(), p, p + t.nbytes());
        o.shape[0] += t.dim() ? t.size(0) : 1;
      }
    }
    write_tensors(out_path, outputs);

    for (int i = 0; i < warmup; ++i) run_sample(0);
    std::vector<double> times;
    for (int i = 0; i < std::max(1, repeats); ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      run_sample(0);
      times.push_back(ms_since(t0));
    }
    std::sort(times.begin(), times.end());
    const double median = times.size() % 2 ? times[times.size() / 2]
                                           : 0.5 * (times[times.size() / 2 - 1] + times[times.size() / 2]);
    std::printf("EDGEQ_RESULT {\"latency_ms_median\": %.6f, \"latency_ms_min\": %.6f, \"load_ms\": %.3f, "
                "\"samples\": %lld, \"repeats\": %zu, \"warmup\": %d, \"outputs\": %zu, "
                "\"runtime\": \"executorch-cpp %s\"}\n",
                median, times.front(), load_ms, static_cast<long long>(n), times.size(), warmup, outputs.size(),
                EDGEQ_EXECUTORCH_VERSION);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "edgeq_runner: error: %s\n", e.what());
    return 1;
  }
}
