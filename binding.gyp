{
  "targets": [
    {
      "target_name": "saslauthd_native",
      "sources": [
        "src/native/addon.cc",
        "src/native/crypt.cc",
        "src/native/syslog.cc",
        "src/native/pam.cc",
        "src/native/listener.cc",
        "src/native/request_decoder.cc",
        "src/native/fingerprint.cc",
        "src/native/shadow_task.cc",
        "src/native/pool.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-O2", "-D_FORTIFY_SOURCE=2", "-fstack-protector-strong"],
      "ldflags": ["-Wl,-z,relro,-z,now"],
      "libraries": ["-lcrypt", "-lpam"]
    },
    {
      "target_name": "saslauthd-loadgen",
      "type": "executable",
      "sources": ["test/bench/loadgen.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-pthread", "-D_FORTIFY_SOURCE=2", "-fstack-protector-strong"],
      "ldflags": ["-pthread"]
    }
  ]
}
