/*
 * Per-record SHA-256 digests of produced records, computed with the GIL released.
 *
 * A transcript keeps one digest per produced record. Hashing a 300-byte record takes the
 * CPU well under a microsecond, but a Python loop around hashlib spends three times that
 * on the calls around the hash, and holds the GIL the tunnel's own thread needs for all of
 * it. This module walks a record layout (streamctl.kafka.records.record_layout: seven ints
 * per record) and hashes every record's length-prefixed key and value in one call, without
 * the GIL.
 *
 * The hash itself is not written here: it is OpenSSL's, the library Python's hashlib is
 * already built on (and with the SHA extensions on CPUs that have them). The module does
 * not link against OpenSSL; `bind(path)` looks the three SHA-256 functions up through
 * hashlib's own _hashlib extension, which is already loaded. Where that fails (no
 * OpenSSL-backed hashlib, a libcrypto without these functions), `bind` answers False and
 * streamctl.transcript.digests keeps to hashlib, with identical results.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

/* OpenSSL's SHA256_CTX is 112 bytes; the room kept for it is larger and aligned, so a
 * library whose context grew a little still fits. */
typedef union {
    unsigned char bytes[512];
    long double align;
    uint64_t align64;
} Context;

typedef int (*InitFn)(void *);
typedef int (*UpdateFn)(void *, const void *, size_t);
typedef int (*FinalFn)(unsigned char *, void *);

static InitFn sha_init = NULL;
static UpdateFn sha_update = NULL;
static FinalFn sha_final = NULL;

#define STRIDE 7
#define DIGEST_SIZE 32
#define HEX_SIZE 64

PyDoc_STRVAR(bind_doc,
"bind(path) -> bool\n\n"
"Find OpenSSL's SHA256_Init/Update/Final through the shared object at `path` (hashlib's\n"
"_hashlib, already loaded) and its dependencies. False when they cannot be found.");

static PyObject *
bind(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *path_obj;
    if (!PyArg_ParseTuple(args, "O&:bind", PyUnicode_FSConverter, &path_obj)) {
        return NULL;
    }
    /* RTLD_NOLOAD: only an object this process has loaded already is looked at. */
    void *handle = dlopen(PyBytes_AS_STRING(path_obj), RTLD_NOW | RTLD_NOLOAD | RTLD_LOCAL);
    Py_DECREF(path_obj);
    if (handle == NULL) {
        Py_RETURN_FALSE;
    }
    /* The handle is kept open for the life of the process: the functions live in it. */
    InitFn i = (InitFn)dlsym(handle, "SHA256_Init");
    UpdateFn u = (UpdateFn)dlsym(handle, "SHA256_Update");
    FinalFn f = (FinalFn)dlsym(handle, "SHA256_Final");
    if (i == NULL || u == NULL || f == NULL) {
        dlclose(handle);
        Py_RETURN_FALSE;
    }
    sha_init = i;
    sha_update = u;
    sha_final = f;
    Py_RETURN_TRUE;
}

static const char HEX[] = "0123456789abcdef";

/* A key or value length as the digest frames it: big-endian int32, -1 for null. */
static void
put_length(unsigned char out[4], int64_t length)
{
    uint32_t v = length < 0 ? 0xFFFFFFFFu : (uint32_t)length;
    out[0] = (unsigned char)(v >> 24);
    out[1] = (unsigned char)(v >> 16);
    out[2] = (unsigned char)(v >> 8);
    out[3] = (unsigned char)v;
}

/* Hash n records described by `layout` (checked by the caller) into hex at `out`. */
static int
hash_all(const unsigned char *buf, const int64_t *layout, Py_ssize_t n, char *out)
{
    Context ctx;
    unsigned char digest[DIGEST_SIZE];
    unsigned char length[4];
    for (Py_ssize_t r = 0; r < n; r++) {
        const int64_t *rec = layout + r * STRIDE;
        int64_t key_pos = rec[2], key_len = rec[3], value_pos = rec[5], value_len = rec[6];
        if (!sha_init(&ctx)) {
            return -1;
        }
        put_length(length, key_len);
        sha_update(&ctx, length, 4);
        if (key_len > 0) {
            sha_update(&ctx, buf + key_pos, (size_t)key_len);
        }
        put_length(length, value_len);
        sha_update(&ctx, length, 4);
        if (value_len > 0) {
            sha_update(&ctx, buf + value_pos, (size_t)value_len);
        }
        if (!sha_final(digest, &ctx)) {
            return -1;
        }
        char *hex = out + r * HEX_SIZE;
        for (int k = 0; k < DIGEST_SIZE; k++) {
            hex[2 * k] = HEX[digest[k] >> 4];
            hex[2 * k + 1] = HEX[digest[k] & 0x0F];
        }
    }
    return 0;
}

PyDoc_STRVAR(layout_digests_doc,
"layout_digests(buf, layout) -> bytes\n\n"
"The hex SHA-256 of every record `layout` (record_layout's list) describes in `buf`,\n"
"64 ASCII characters per record, in order: the same digests as\n"
"streamctl.transcript.digests.record_digest(key, value). bind() must have answered True.");

static PyObject *
layout_digests(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer view;
    PyObject *layout_obj;
    if (sha_init == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_digests_c.bind() has not found SHA-256");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "y*O!:layout_digests", &view, &PyList_Type, &layout_obj)) {
        return NULL;
    }
    PyObject *result = NULL;
    int64_t *layout = NULL;
    Py_ssize_t items = PyList_GET_SIZE(layout_obj);
    if (items < 1 || (items - 1) % STRIDE != 0) {
        PyErr_SetString(PyExc_ValueError, "layout must hold 7 ints per record and an end");
        goto done;
    }
    Py_ssize_t n = (items - 1) / STRIDE;
    if (n > PY_SSIZE_T_MAX / HEX_SIZE) {
        PyErr_NoMemory();
        goto done;
    }
    layout = PyMem_New(int64_t, (size_t)items);
    if (layout == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* Every int is read and checked here, with the GIL: the list cannot change later. */
    for (Py_ssize_t i = 0; i < items; i++) {
        long long v = PyLong_AsLongLong(PyList_GET_ITEM(layout_obj, i));
        if (v == -1 && PyErr_Occurred()) {
            goto done;
        }
        layout[i] = (int64_t)v;
    }
    for (Py_ssize_t r = 0; r < n; r++) {
        const int64_t *rec = layout + r * STRIDE;
        for (int part = 0; part < 2; part++) {
            int64_t pos = rec[part ? 5 : 2], len = rec[part ? 6 : 3];
            if (len >= 0 && (pos < 0 || len > (int64_t)view.len || pos > (int64_t)view.len - len)) {
                PyErr_Format(PyExc_ValueError, "layout of record %zd points outside the buffer",
                             r);
                goto done;
            }
        }
    }
    result = PyBytes_FromStringAndSize(NULL, n * HEX_SIZE);
    if (result == NULL) {
        goto done;
    }
    int failed;
    /* `view` holds the buffer (a bytearray cannot be resized while it is exported) and
     * `result` is not shared yet, so both can be used without the GIL. */
    Py_BEGIN_ALLOW_THREADS
    failed = hash_all((const unsigned char *)view.buf, layout, n, PyBytes_AS_STRING(result));
    Py_END_ALLOW_THREADS
    if (failed) {
        Py_CLEAR(result);
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL's SHA-256 reported a failure");
    }
done:
    PyMem_Free(layout);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"bind", bind, METH_VARARGS, bind_doc},
    {"layout_digests", layout_digests, METH_VARARGS, layout_digests_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "streamctl.transcript._digests_c",
    "Per-record SHA-256 digests without the GIL (reference: streamctl.transcript.digests).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__digests_c(void)
{
    return PyModule_Create(&module_def);
}
