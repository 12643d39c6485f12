{
  # The CPU addon built by node-gyp (`npm run build:gyp`), for machines without cmake. Sources are
  # listed by globbing native/cpu and native/napi, as CMakeLists.txt does; the *_avx512 / *_avx2
  # translation units go into their own static libraries so only they get the wide-SIMD flags.
  # MPI is left out of this build: native/napi/mpi.cc compiles without it and addon.mpi.available() is false
  # (data-parallel training needs the cmake-js build with libopenmpi-dev installed).
  "variables": {
    "cpu_plain": "<!(node -p \"require('fs').readdirSync('native/cpu').filter(f=>f.endsWith('.cc')&&!/_avx(512|2)\\.cc$/.test(f)).map(f=>'native/cpu/'+f).join(' ')\")",
    "cpu_avx512": "<!(node -p \"require('fs').readdirSync('native/cpu').filter(f=>/_avx512\\.cc$/.test(f)).map(f=>'native/cpu/'+f).join(' ')\")",
    "cpu_avx2": "<!(node -p \"require('fs').readdirSync('native/cpu').filter(f=>/_avx2\\.cc$/.test(f)).map(f=>'native/cpu/'+f).join(' ')\")",
    "napi_sources": "<!(node -p \"require('fs').readdirSync('native/napi').filter(f=>f.endsWith('.cc')).map(f=>'native/napi/'+f).join(' ')\")"
  },
  "target_defaults": {
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "native/include", "native"],
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "GPTUNE_X86=1"],
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
    "cflags_cc": ["-std=c++17", "-O3", "-fno-math-errno", "-fexceptions", "-fPIC"]
  },
  "targets": [
    {
      "target_name": "gptune_avx512",
      "type": "static_library",
      "sources": ["<@(cpu_avx512)"],
      "cflags_cc": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mfma", "-mavx2"]
    },
    {
      "target_name": "gptune_avx2",
      "type": "static_library",
      "sources": ["<@(cpu_avx2)"],
      "cflags_cc": ["-mavx2", "-mfma", "-mf16c"]
    },
    {
      "target_name": "gptune",
      "sources": ["<@(cpu_plain)", "<@(napi_sources)"],
      "dependencies": ["gptune_avx512", "gptune_avx2"],
      "libraries": ["-lpthread"]
    }
  ]
}
