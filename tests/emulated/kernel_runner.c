/* Runs one exported TVM kernel library (a PrimFunc, symbol __tvm_ffi_main) without the TVM
 * runtime, so that an AArch64 build can be checked under qemu-user without an AArch64 Python.
 *
 *   kernel_runner LIB.so TENSOR...     TENSOR = DTYPE:D0xD1x...:PATH:in|out
 *                                      DTYPE  = int8 | uint8 | int32 | float32
 *
 * Each tensor is read from PATH (raw, C order); "out" tensors are written back after the
 * call. The library's imports from the runtime are provided here: parallel launch (tasks run
 * one after another, two of them, so the split across tasks is exercised), the workspace
 * allocator, and error reporting (printed, exit status 3).
 * Every tensor and workspace buffer starts 64-byte aligned, as TVM's allocators and the
 * alignment its code assumes have it, and ends at most 63 bytes before an inaccessible page:
 * a kernel that touches the next 64-byte block past a buffer faults (SIGSEGV) instead of
 * passing by luck.  (Bytes inside a buffer's last aligned block may be read: the alignment
 * lets LLVM widen a load there, and no real allocation can fault on them.)
 * KERNEL_RUNNER_CALLS=N in the environment repeats the call N times.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct { int32_t device_type, device_id; } DLDevice;
typedef struct { uint8_t code, bits; uint16_t lanes; } DLDataType;
typedef struct {
  void* data; DLDevice device; int32_t ndim; DLDataType dtype;
  int64_t* shape; int64_t* strides; uint64_t byte_offset;
} DLTensor;
typedef struct { int32_t type_index; uint32_t zero_padding; union { int64_t v_int64; void* v_ptr; }; } TVMFFIAny;
typedef int (*SafeCall)(void*, const TVMFFIAny*, int32_t, TVMFFIAny*);
typedef struct { void* sync_handle; int32_t num_task; } TVMParallelGroupEnv;
typedef int (*ParallelLambda)(int, TVMParallelGroupEnv*, void*);

enum { kDLInt = 0, kDLUInt = 1, kDLFloat = 2, kDLCPU = 1, kTVMFFIDLTensorPtr = 7 };

void TVMFFIErrorSetRaisedFromCStrParts(const char* kind, const char** parts, int32_t n) {
  fprintf(stderr, "kernel raised %s:", kind);
  for (int i = 0; i < n; ++i) if (parts[i]) fprintf(stderr, " %s", parts[i]);
  fprintf(stderr, "\n");
}

static int parallel_launch(ParallelLambda f, void* cdata, int num_task) {
  TVMParallelGroupEnv env = {NULL, num_task > 0 ? num_task : 2};
  for (int i = 0; i < env.num_task; ++i) {
    int rc = f(i, &env, cdata);
    if (rc) return rc;
  }
  return 0;
}

static int parallel_barrier(int task_id, TVMParallelGroupEnv* env) {
  (void)task_id;
  if (env->num_task > 1) {
    fprintf(stderr, "kernel_runner: a barrier across serially run tasks is not supported\n");
    exit(4);
  }
  return 0;
}

/* guarded buffers: [data pages, the buffer at their end][PROT_NONE page] */
typedef struct { void* ptr; void* base; size_t len; } Mapping;
static Mapping maps[4096];
static int n_maps;

static void* guarded_alloc(size_t size) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size = (size + 63) / 64 * 64; /* the buffer's aligned blocks end at the guard page */
  size_t data = (size + page - 1) / page * page;
  if (!data) data = page;
  char* base = mmap(NULL, data + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                    -1, 0);
  if (base == MAP_FAILED || mprotect(base + data, page, PROT_NONE)) return NULL;
  void* ptr = base + data - size;
  for (int i = 0; i < n_maps; ++i)
    if (!maps[i].ptr) { maps[i] = (Mapping){ptr, base, data + page}; return ptr; }
  if (n_maps == 4096) return NULL;
  maps[n_maps++] = (Mapping){ptr, base, data + page};
  return ptr;
}

static void* alloc_workspace(int dev_type, int dev_id, uint64_t size, int code, int bits) {
  (void)dev_type; (void)dev_id; (void)code; (void)bits;
  return guarded_alloc(size);
}

static int free_workspace(int dev_type, int dev_id, void* ptr) {
  (void)dev_type; (void)dev_id;
  for (int i = 0; i < n_maps; ++i)
    if (maps[i].ptr == ptr) {
      munmap(maps[i].base, maps[i].len);
      maps[i].ptr = NULL;
      return 0;
    }
  return -1;
}

static void set_import(void* lib, const char* name, void* fn) {
  void** slot = (void**)dlsym(lib, name);
  if (slot) *slot = fn;
}

static void die(const char* what, const char* arg) {
  fprintf(stderr, "kernel_runner: %s: %s\n", what, arg);
  exit(2);
}

static DLDataType parse_dtype(const char* s) {
  if (!strcmp(s, "int8")) return (DLDataType){kDLInt, 8, 1};
  if (!strcmp(s, "uint8")) return (DLDataType){kDLUInt, 8, 1};
  if (!strcmp(s, "int32")) return (DLDataType){kDLInt, 32, 1};
  if (!strcmp(s, "float32")) return (DLDataType){kDLFloat, 32, 1};
  die("unknown dtype", s);
  return (DLDataType){0, 0, 0};
}

int main(int argc, char** argv) {
  if (argc < 3) die("usage", "kernel_runner LIB.so DTYPE:D0xD1:PATH:in|out ...");
  void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) die("dlopen", dlerror());
  set_import(lib, "__TVMBackendParallelLaunch", (void*)parallel_launch);
  set_import(lib, "__TVMBackendParallelBarrier", (void*)parallel_barrier);
  set_import(lib, "__TVMBackendAllocWorkspace", (void*)alloc_workspace);
  set_import(lib, "__TVMBackendFreeWorkspace", (void*)free_workspace);
  SafeCall fn = (SafeCall)dlsym(lib, "__tvm_ffi_main");
  if (!fn) die("no __tvm_ffi_main in", argv[1]);

  int n = argc - 2;
  DLTensor* ts = calloc(n, sizeof(DLTensor));
  TVMFFIAny* args = calloc(n, sizeof(TVMFFIAny));
  char** paths = calloc(n, sizeof(char*));
  int* outs = calloc(n, sizeof(int));
  size_t* bytes = calloc(n, sizeof(size_t));
  for (int i = 0; i < n; ++i) {
    char* spec = strdup(argv[i + 2]);
    char* dtype = strtok(spec, ":");
    char* dims = strtok(NULL, ":");
    paths[i] = strtok(NULL, ":");
    char* mode = strtok(NULL, ":");
    if (!dtype || !dims || !paths[i] || !mode) die("bad tensor spec", argv[i + 2]);
    outs[i] = !strcmp(mode, "out");
    ts[i].dtype = parse_dtype(dtype);
    ts[i].shape = calloc(8, sizeof(int64_t));
    size_t count = 1;
    for (char* d = strtok(dims, "x"); d; d = strtok(NULL, "x")) {
      if (ts[i].ndim == 8) die("more than 8 dimensions", argv[i + 2]);
      ts[i].shape[ts[i].ndim++] = atoll(d);
      count *= (size_t)atoll(d);
    }
    bytes[i] = count * ts[i].dtype.bits / 8;
    ts[i].device = (DLDevice){kDLCPU, 0};
    ts[i].data = guarded_alloc(bytes[i]);
    if (!ts[i].data) die("cannot allocate", argv[i + 2]);
    FILE* f = fopen(paths[i], "rb");
    if (!f || fread(ts[i].data, 1, bytes[i], f) != bytes[i]) die("cannot read", paths[i]);
    fclose(f);
    args[i].type_index = kTVMFFIDLTensorPtr;
    args[i].v_ptr = &ts[i];
  }
  /* KERNEL_RUNNER_CALLS=N calls the kernel N times (same inputs, same outputs): the
   * difference between two instruction counts is then one call's (benchmarks/). */
  const char* calls_env = getenv("KERNEL_RUNNER_CALLS");
  int calls = calls_env ? atoi(calls_env) : 1;
  for (int c = 0; c < calls; ++c) {
    TVMFFIAny result = {0};
    if (fn(NULL, args, n, &result)) return 3;
  }
  for (int i = 0; i < n; ++i) {
    if (!outs[i]) continue;
    FILE* f = fopen(paths[i], "wb");
    if (!f || fwrite(ts[i].data, 1, bytes[i], f) != bytes[i]) die("cannot write", paths[i]);
    fclose(f);
  }
  return 0;
}
