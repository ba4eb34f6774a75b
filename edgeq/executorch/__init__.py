"""ExecuTorch path: torchao PT2E INT8 with the XNNPACK quantizer, XNNPACK lowering + delegation report, .bpte
bundles, host execution (Python runtime) and the torch-free C++ runner build. Importing this package is cheap;
executorch/torch are imported by the modules that need them."""
