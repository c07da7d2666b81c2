{
  "targets": [
    {
      "target_name": "tfjs_native",
      "sources": [
        "native/addon.cc",
        "native/threads.cc",
        "native/matmul.cc",
        "native/elementwise.cc",
        "native/reduce.cc",
        "native/layout.cc",
        "native/xent.cc",
        "native/soft_xent.cc",
        "native/norm.cc",
        "native/adamw.cc",
        "native/muon.cc",
        "native/decode.cc",
        "native/program.cc",
        "native/attention.cc",
        "native/attend_kinds.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off"],
      "ldflags": ["-fopenmp"],
      "libraries": ["-ldnnl", "-lgomp"]
    }
  ]
}
