/*
 * C accelerator for the records section of magic-2 record batches.
 *
 * It also computes the per-record digests of a transcript (record_digests, near the end),
 * because that is one more walk over the same records.
 *
 * streamctl/kafka/records.py holds the reference implementation in pure Python; this module
 * mirrors its three hot paths (_py_decode_records, _py_encode_records, _py_layout_records)
 * read for read and check for check, so that both raise RecordsError with the same message
 * on the same bytes and return equal results otherwise. The tests compare the two on
 * generated and on random input.
 *
 * The bytes come from untrusted clients and brokers: every read is checked against the
 * buffer's length, every length against the record's end, and positions are 64-bit so no
 * sum of a position and a decoded length (at most 35 bits) can overflow. A read past the
 * end of the buffer is reported as "records truncated", as the Python code reports its
 * IndexError.
 *
 * records.py calls init(Record, RecordsError) once at import: Record is the NamedTuple the
 * decoder builds and RecordsError the exception class every corrupt input raises.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

static PyTypeObject *record_type = NULL;
static PyObject *records_error = NULL;

/* Return codes of the parsing helpers: 0 fine, ERR an exception is set, TRUNCATED a read
 * went past the end of the buffer (the caller raises "records truncated"). */
#define ERR (-1)
#define TRUNCATED (-2)

/* The smallest record: length, attributes, two deltas, key, value and header count. */
#define MIN_RECORD_SIZE 7
#define LAYOUT_STRIDE 7

typedef struct {
    const uint8_t *buf;
    int64_t len; /* reads at or beyond len are truncation */
} Input;

static int
check_ready(void)
{
    if (record_type == NULL || records_error == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_records_c.init() has not been called");
        return -1;
    }
    return 0;
}

/* ---- decoding ------------------------------------------------------------------------ */

/* A zigzag varint of at most max_bytes bytes (5: int32, 10: int64) starting at *pos. */
static int
read_varint_slow(const Input *in, int64_t *pos, int max_bytes, int64_t *out)
{
    uint64_t v = 0;
    int64_t p = *pos;
    for (int i = 0; i < max_bytes; i++) {
        if (p < 0 || p >= in->len) {
            return TRUNCATED;
        }
        uint8_t b = in->buf[p++];
        v |= (uint64_t)(b & 0x7F) << (7 * i);
        if (b < 0x80) {
            if (i == 9 && b > 1) {
                PyErr_SetString(records_error, "varint does not fit in 64 bits");
                return ERR;
            }
            *pos = p;
            *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
            return 0;
        }
    }
    PyErr_Format(records_error, "varint longer than %d bytes", max_bytes);
    return ERR;
}

/* The one-byte case inline: record lengths under 64, small deltas, null keys. */
static inline int
read_varint(const Input *in, int64_t *pos, int max_bytes, int64_t *out)
{
    int64_t p = *pos;
    if (p >= 0 && p < in->len && in->buf[p] < 0x80) {
        uint8_t b = in->buf[p];
        *out = (int64_t)(b >> 1) ^ -(int64_t)(b & 1);
        *pos = p + 1;
        return 0;
    }
    return read_varint_slow(in, pos, max_bytes, out);
}

/* Read one byte at pos into *out, or report truncation. */
static inline int
read_byte(const Input *in, int64_t pos, uint8_t *out)
{
    if (pos < 0 || pos >= in->len) {
        return TRUNCATED;
    }
    *out = in->buf[pos];
    return 0;
}

/* RecordsError "record at offset N has length L but its fields take ..." (N may exceed
 * 64 bits when a hostile base offset meets a hostile delta, so it is summed as ints). */
static void
raise_record_overrun(PyObject *base_offset, int64_t offset_delta, int64_t length,
                     const char *what)
{
    PyObject *delta = PyLong_FromLongLong(offset_delta);
    if (delta == NULL) {
        return;
    }
    PyObject *offset = PyNumber_Add(base_offset, delta);
    Py_DECREF(delta);
    if (offset == NULL) {
        return;
    }
    PyErr_Format(records_error, "record at offset %S has length %lld but its fields take %s",
                 offset, (long long)length, what);
    Py_DECREF(offset);
}

static void
raise_record_size_mismatch(PyObject *base_offset, int64_t offset_delta, int64_t length,
                           int64_t taken)
{
    char what[48];
    PyOS_snprintf(what, sizeof(what), "%lld bytes", (long long)taken);
    raise_record_overrun(base_offset, offset_delta, length, what);
}

/* Walk (and, when out is not NULL, build) a record's header array starting at its count
 * varint; *pos ends after the last header. Mirrors records._decode_headers. */
static int
parse_headers(const Input *in, int64_t *pos, int64_t rec_end, PyObject **out)
{
    int64_t count, n;
    const int64_t array_start = *pos;
    int rc = read_varint(in, pos, 5, &count);
    if (rc) {
        return rc;
    }
    if (count < 0 || count * 2 > rec_end - *pos) {
        PyErr_Format(records_error, "record header count %lld is impossible", (long long)count);
        return ERR;
    }
    PyObject *headers = NULL;
    if (out != NULL) {
        /* Walk the array once without building anything, so a header count that only the
         * record's length bounds (millions, in a well-compressed batch) costs no memory
         * before it is known to be real. */
        int64_t probe = array_start;
        rc = parse_headers(in, &probe, rec_end, NULL);
        if (rc) {
            return rc;
        }
        headers = PyTuple_New((Py_ssize_t)count);
        if (headers == NULL) {
            return ERR;
        }
    }
    for (int64_t i = 0; i < count; i++) {
        rc = read_varint(in, pos, 5, &n);
        if (rc) {
            goto fail;
        }
        if (n < 0 || *pos + n > rec_end) {
            PyErr_Format(records_error, "record header key length %lld is impossible",
                         (long long)n);
            rc = ERR;
            goto fail;
        }
        if (*pos + n > in->len) {
            rc = TRUNCATED; /* the Python code fails on its next read */
            goto fail;
        }
        int64_t key_pos = *pos;
        int64_t key_len = n;
        *pos += n;
        rc = read_varint(in, pos, 5, &n);
        if (rc) {
            goto fail;
        }
        int64_t value_pos = *pos;
        if (n < 0) {
            if (n != -1) {
                PyErr_Format(records_error, "record header value length %lld is impossible",
                             (long long)n);
                rc = ERR;
                goto fail;
            }
        }
        else {
            if (*pos + n > rec_end) {
                PyErr_Format(records_error, "record header value length %lld is impossible",
                             (long long)n);
                rc = ERR;
                goto fail;
            }
            if (*pos + n > in->len) {
                rc = TRUNCATED;
                goto fail;
            }
            *pos += n;
        }
        if (headers != NULL) {
            PyObject *key = PyUnicode_DecodeUTF8((const char *)in->buf + key_pos,
                                                 (Py_ssize_t)key_len, "surrogateescape");
            if (key == NULL) {
                rc = ERR;
                goto fail;
            }
            PyObject *value;
            if (n < 0) {
                value = Py_NewRef(Py_None);
            }
            else {
                value = PyBytes_FromStringAndSize((const char *)in->buf + value_pos,
                                                  (Py_ssize_t)n);
                if (value == NULL) {
                    Py_DECREF(key);
                    rc = ERR;
                    goto fail;
                }
            }
            PyObject *pair = PyTuple_New(2);
            if (pair == NULL) {
                Py_DECREF(key);
                Py_DECREF(value);
                rc = ERR;
                goto fail;
            }
            PyTuple_SET_ITEM(pair, 0, key);
            PyTuple_SET_ITEM(pair, 1, value);
            PyTuple_SET_ITEM(headers, (Py_ssize_t)i, pair);
        }
    }
    if (out != NULL) {
        *out = headers;
    }
    return 0;
fail:
    Py_XDECREF(headers);
    return rc;
}

/* Where one record's parts are, as record_layout reports them, plus decoded fields. */
typedef struct {
    int64_t start, body, key_pos, key_len, value_len_pos, value_pos, value_len, end;
    int64_t ts_delta, offset_delta;
    uint8_t attributes;
    PyObject *headers; /* decode mode only: a new reference */
} Parsed;

/* One record at *pos for decode_records (decode: 1, headers built) or record_layout. The two
 * Python functions differ in a few reads and checks; each mode follows its own. */
static int
parse_record(const Input *in, int64_t *pos, int64_t size, PyObject *base_offset, int decode,
             Parsed *r)
{
    int64_t length, n;
    uint8_t b;
    int rc;
    r->headers = NULL;
    r->start = *pos;
    if ((rc = read_varint(in, pos, 5, &length))) {
        return rc;
    }
    r->body = *pos;
    int64_t rec_end = *pos + length;
    if (length < 6 || rec_end > size) {
        PyErr_Format(records_error, "record length %lld is impossible", (long long)length);
        return ERR;
    }
    r->end = rec_end;
    if (decode) {
        if ((rc = read_byte(in, *pos, &b))) {
            return rc;
        }
        r->attributes = b;
    }
    else {
        r->attributes = 0; /* the layout reads past it unseen */
    }
    *pos += 1;
    if ((rc = read_varint(in, pos, 10, &r->ts_delta))) {
        return rc;
    }
    if ((rc = read_varint(in, pos, 5, &r->offset_delta))) {
        return rc;
    }
    if ((rc = read_byte(in, *pos, &b))) {
        return rc;
    }
    if (b == 1) {
        n = -1;
        *pos += 1;
    }
    else {
        if ((rc = read_varint(in, pos, 5, &n))) {
            return rc;
        }
        if (n < 0) {
            PyErr_Format(records_error, "key length %lld is impossible", (long long)n);
            return ERR;
        }
    }
    r->key_pos = *pos;
    r->key_len = n;
    if (n > 0) {
        *pos += n;
        if (decode && *pos > in->len) {
            return TRUNCATED; /* the Python code fails on its next read */
        }
    }
    r->value_len_pos = *pos;
    if ((rc = read_varint(in, pos, 5, &n))) {
        return rc;
    }
    r->value_pos = *pos;
    r->value_len = n;
    if (n < 0) {
        if (n != -1) {
            PyErr_Format(records_error, "value length %lld is impossible", (long long)n);
            return ERR;
        }
    }
    else {
        *pos += n;
        if (decode && *pos > in->len) {
            return TRUNCATED;
        }
    }
    if (!decode && *pos >= rec_end) {
        raise_record_overrun(base_offset, r->offset_delta, length, "more bytes");
        return ERR;
    }
    if ((rc = read_byte(in, *pos, &b))) {
        return rc;
    }
    if (b == 0) {
        *pos += 1;
    }
    else if ((rc = parse_headers(in, pos, rec_end, decode ? &r->headers : NULL))) {
        return rc;
    }
    if (*pos != rec_end) {
        Py_CLEAR(r->headers);
        raise_record_size_mismatch(base_offset, r->offset_delta, length,
                                   length + *pos - rec_end);
        return ERR;
    }
    return 0;
}

static void
raise_truncated(PyObject *base_offset)
{
    PyErr_Format(records_error, "record batch at offset %S: records truncated", base_offset);
}

static void
raise_trailing(PyObject *base_offset, int64_t extra)
{
    PyErr_Format(records_error, "record batch at offset %S: %lld bytes after the last record",
                 base_offset, (long long)extra);
}

/* How many records fit in size - pos bytes: more than that cannot all decode. */
static Py_ssize_t
records_bound(Py_ssize_t count, int64_t pos, int64_t size)
{
    if (count <= 0 || size <= pos) {
        return 0;
    }
    int64_t fit = (size - pos) / MIN_RECORD_SIZE;
    return count < fit ? count : (Py_ssize_t)fit;
}

/* Check the positions a caller passes in; the Python code trusts its callers here. */
static int
check_span(const Py_buffer *view, Py_ssize_t pos, Py_ssize_t size)
{
    if (pos < 0 || size < 0 || size > view->len) {
        PyErr_Format(PyExc_ValueError, "records span %zd..%zd is outside a buffer of %zd bytes",
                     pos, size, view->len);
        return -1;
    }
    return 0;
}

static PyObject *
new_record(const Input *in, const Parsed *r)
{
    PyObject *items[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
    items[0] = PyLong_FromLong(r->attributes);
    items[1] = PyLong_FromLongLong(r->ts_delta);
    items[2] = PyLong_FromLongLong(r->offset_delta);
    if (r->key_len < 0) {
        items[3] = Py_NewRef(Py_None);
    }
    else {
        items[3] = PyBytes_FromStringAndSize((const char *)in->buf + r->key_pos,
                                             (Py_ssize_t)r->key_len);
    }
    if (r->value_len < 0) {
        items[4] = Py_NewRef(Py_None);
    }
    else {
        items[4] = PyBytes_FromStringAndSize((const char *)in->buf + r->value_pos,
                                             (Py_ssize_t)r->value_len);
    }
    items[5] = r->headers != NULL ? Py_NewRef(r->headers) : PyTuple_New(0);
    for (int i = 0; i < 6; i++) {
        if (items[i] == NULL) {
            goto fail;
        }
    }
    /* Record is a tuple subclass without a __dict__ (checked in init): allocate it as
     * tuple.__new__(Record, ...) does, after every item exists, then fill it. */
    PyObject *record = record_type->tp_alloc(record_type, 6);
    if (record == NULL) {
        goto fail;
    }
#if PY_VERSION_HEX >= 0x030E0000
    /* 3.14 tuples cache their hash; -1 is "not computed" (tp_alloc leaves 0, a hash). */
    ((PyTupleObject *)record)->ob_hash = -1;
#endif
    for (int i = 0; i < 6; i++) {
        PyTuple_SET_ITEM(record, i, items[i]);
    }
    return record;
fail:
    for (int i = 0; i < 6; i++) {
        Py_XDECREF(items[i]);
    }
    return NULL;
}

PyDoc_STRVAR(decode_records_doc,
"decode_records(buf, pos, size, count, base_offset, starts) -> list[Record]\n\n"
"Decode `count` records filling exactly buf[pos:size]; `starts` gets each one's position\n"
"and then the end. The contract of records._py_decode_records.");

static PyObject *
decode_records(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer view;
    Py_ssize_t pos, size, count;
    PyObject *base_offset, *starts;
    if (check_ready() < 0) {
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "y*nnnOO!:decode_records", &view, &pos, &size, &count,
                          &base_offset, &PyList_Type, &starts)) {
        return NULL;
    }
    PyObject *records = NULL;
    if (check_span(&view, pos, size) < 0) {
        goto done;
    }
    Input in = {(const uint8_t *)view.buf, (int64_t)view.len};
    int64_t p = pos;
    Py_ssize_t slots = records_bound(count, p, size);
    records = PyList_New(slots);
    if (records == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *mark = PyLong_FromLongLong(p);
        if (mark == NULL || PyList_Append(starts, mark) < 0) {
            Py_XDECREF(mark);
            goto fail;
        }
        Py_DECREF(mark);
        Parsed r;
        int rc = parse_record(&in, &p, size, base_offset, 1, &r);
        if (rc == TRUNCATED) {
            raise_truncated(base_offset);
            goto fail;
        }
        if (rc) {
            goto fail;
        }
        if (i >= slots) { /* cannot happen: each record takes MIN_RECORD_SIZE bytes */
            Py_XDECREF(r.headers);
            PyErr_SetString(PyExc_SystemError, "decode_records: more records than bytes");
            goto fail;
        }
        PyObject *record = new_record(&in, &r);
        Py_XDECREF(r.headers);
        if (record == NULL) {
            goto fail;
        }
        PyList_SET_ITEM(records, i, record);
    }
    if (p != size) {
        raise_trailing(base_offset, size - p);
        goto fail;
    }
    PyObject *mark = PyLong_FromLongLong(p);
    if (mark == NULL || PyList_Append(starts, mark) < 0) {
        Py_XDECREF(mark);
        goto fail;
    }
    Py_DECREF(mark);
    goto done;
fail:
    Py_CLEAR(records);
done:
    PyBuffer_Release(&view);
    return records;
}

/* Walk the `count` records filling exactly buf[pos:size] as record_layout does (the same
 * reads, checks and errors), writing LAYOUT_STRIDE ints per record into `fields` (room for
 * `slots` = records_bound(...) records) and the end of the last record into *end.
 * 0 on success; -1 with an exception set. Shared by record_layout and record_digests. */
static int
walk_layout(const Py_buffer *view, Py_ssize_t pos, Py_ssize_t size, Py_ssize_t count,
            PyObject *base_offset, int64_t *fields, Py_ssize_t slots, int64_t *end)
{
    Input in = {(const uint8_t *)view->buf, (int64_t)view->len};
    int64_t p = pos;
    for (Py_ssize_t i = 0; i < count; i++) {
        Parsed r;
        int rc = parse_record(&in, &p, size, base_offset, 0, &r);
        if (rc == TRUNCATED) {
            raise_truncated(base_offset);
            return -1;
        }
        if (rc) {
            return -1;
        }
        if (i >= slots) {
            PyErr_SetString(PyExc_SystemError, "record layout: more records than bytes");
            return -1;
        }
        int64_t *f = fields + i * LAYOUT_STRIDE;
        f[0] = r.start;
        f[1] = r.body;
        f[2] = r.key_pos;
        f[3] = r.key_len;
        f[4] = r.value_len_pos;
        f[5] = r.value_pos;
        f[6] = r.value_len;
    }
    if (p != size) {
        raise_trailing(base_offset, size - p);
        return -1;
    }
    *end = p;
    return 0;
}

PyDoc_STRVAR(record_layout_doc,
"record_layout(buf, pos, size, count, base_offset) -> list[int]\n\n"
"Seven ints per record (start, body, key position, key length, value-length position,\n"
"value position, value length) and then the end of the last record, checked as strictly\n"
"as decoding. The contract of records._py_layout_records.");

static PyObject *
record_layout(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer view;
    Py_ssize_t pos, size, count;
    PyObject *base_offset;
    if (check_ready() < 0) {
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "y*nnnO:record_layout", &view, &pos, &size, &count,
                          &base_offset)) {
        return NULL;
    }
    PyObject *layout = NULL;
    int64_t *fields = NULL;
    int64_t end;
    if (check_span(&view, pos, size) < 0) {
        goto done;
    }
    Py_ssize_t slots = records_bound(count, pos, size);
    fields = PyMem_New(int64_t, (size_t)(slots * LAYOUT_STRIDE + 1));
    if (fields == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (walk_layout(&view, pos, size, count, base_offset, fields, slots, &end) < 0) {
        goto done;
    }
    /* count > slots always fails in the walk, so the records fill the slots exactly. */
    fields[slots * LAYOUT_STRIDE] = end;
    layout = PyList_New(slots * LAYOUT_STRIDE + 1);
    if (layout == NULL) {
        goto done;
    }
    for (Py_ssize_t k = 0; k <= slots * LAYOUT_STRIDE; k++) {
        PyObject *v = PyLong_FromLongLong(fields[k]);
        if (v == NULL) {
            Py_CLEAR(layout);
            goto done;
        }
        PyList_SET_ITEM(layout, k, v);
    }
done:
    PyMem_Free(fields);
    PyBuffer_Release(&view);
    return layout;
}

/* ---- digests ------------------------------------------------------------------------- */

/* A transcript keeps one SHA-256 digest per produced record (see
 * streamctl/transcript/digests.py for the reference loop over record_layout with hashlib).
 * Here the records are walked as record_layout walks them, and hashed in one pass with the
 * GIL released, the tunnel's own thread keeps running meanwhile.
 *
 * The hash is not written here: it is OpenSSL's, the library Python's hashlib is built on
 * (with the SHA extensions on CPUs that have them). The module does not link against
 * OpenSSL; bind_sha256(path) finds SHA256_Init/Update/Final through hashlib's _hashlib
 * extension, already loaded, and its dependencies. Where that fails, digests.py keeps to
 * hashlib, with identical results. */

/* OpenSSL's SHA256_CTX is 112 bytes; the room kept for it is larger and aligned. */
typedef union {
    unsigned char bytes[512];
    long double align;
    uint64_t align64;
} ShaContext;

typedef int (*ShaInitFn)(void *);
typedef int (*ShaUpdateFn)(void *, const void *, size_t);
typedef int (*ShaFinalFn)(unsigned char *, void *);

static ShaInitFn sha_init = NULL;
static ShaUpdateFn sha_update = NULL;
static ShaFinalFn sha_final = NULL;

#define DIGEST_SIZE 32
#define HEX_SIZE 64

PyDoc_STRVAR(bind_sha256_doc,
"bind_sha256(path) -> bool\n\n"
"Find OpenSSL's SHA256_Init/Update/Final through the already loaded shared object at\n"
"`path` (hashlib's _hashlib) and its dependencies. False when they cannot be found.");

static PyObject *
bind_sha256(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *path_obj;
    if (!PyArg_ParseTuple(args, "O&:bind_sha256", PyUnicode_FSConverter, &path_obj)) {
        return NULL;
    }
    /* RTLD_NOLOAD: only an object this process has loaded already is looked at. */
    void *handle = dlopen(PyBytes_AS_STRING(path_obj), RTLD_NOW | RTLD_NOLOAD | RTLD_LOCAL);
    Py_DECREF(path_obj);
    if (handle == NULL) {
        Py_RETURN_FALSE;
    }
    /* The handle stays open for the life of the process: the functions live in it. */
    ShaInitFn i = (ShaInitFn)dlsym(handle, "SHA256_Init");
    ShaUpdateFn u = (ShaUpdateFn)dlsym(handle, "SHA256_Update");
    ShaFinalFn f = (ShaFinalFn)dlsym(handle, "SHA256_Final");
    if (i == NULL || u == NULL || f == NULL) {
        dlclose(handle);
        Py_RETURN_FALSE;
    }
    sha_init = i;
    sha_update = u;
    sha_final = f;
    Py_RETURN_TRUE;
}

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

/* Hash n records laid out by walk_layout (key position and length at 2 and 3, value
 * position and length at 5 and 6 of each LAYOUT_STRIDE) into 64 hex characters each at
 * out. Runs without the GIL. */
static int
hash_records(const unsigned char *buf, const int64_t *fields, Py_ssize_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    ShaContext ctx;
    unsigned char digest[DIGEST_SIZE];
    unsigned char length[4];
    for (Py_ssize_t r = 0; r < n; r++) {
        const int64_t *f = fields + r * LAYOUT_STRIDE;
        if (!sha_init(&ctx)) {
            return -1;
        }
        for (int at = 2; at <= 5; at += 3) { /* the key (2, 3), then the value (5, 6) */
            put_length(length, f[at + 1]);
            sha_update(&ctx, length, 4);
            if (f[at + 1] > 0) {
                sha_update(&ctx, buf + f[at], (size_t)f[at + 1]);
            }
        }
        if (!sha_final(digest, &ctx)) {
            return -1;
        }
        char *text = out + r * HEX_SIZE;
        for (int k = 0; k < DIGEST_SIZE; k++) {
            text[2 * k] = hex[digest[k] >> 4];
            text[2 * k + 1] = hex[digest[k] & 0x0F];
        }
    }
    return 0;
}

PyDoc_STRVAR(record_digests_doc,
"record_digests(buf, pos, size, count, base_offset) -> list[str]\n\n"
"The hex SHA-256 digest of every record of a section, in order: record_layout's walk\n"
"(same checks, same errors), then digests.record_digest(key, value) of each record.\n"
"bind_sha256() must have answered True.");

static PyObject *
record_digests(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer view;
    Py_ssize_t pos, size, count;
    PyObject *base_offset;
    if (check_ready() < 0) {
        return NULL;
    }
    if (sha_init == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "bind_sha256() has not found SHA-256");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "y*nnnO:record_digests", &view, &pos, &size, &count,
                          &base_offset)) {
        return NULL;
    }
    PyObject *result = NULL;
    int64_t *fields = NULL;
    char *hex = NULL;
    int64_t end;
    if (check_span(&view, pos, size) < 0) {
        goto done;
    }
    Py_ssize_t slots = records_bound(count, pos, size);
    fields = PyMem_New(int64_t, (size_t)(slots * LAYOUT_STRIDE + 1));
    hex = PyMem_Malloc((size_t)slots * HEX_SIZE + 1);
    if (fields == NULL || hex == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (walk_layout(&view, pos, size, count, base_offset, fields, slots, &end) < 0) {
        goto done;
    }
    int failed;
    /* `view` keeps the buffer alive and unchanged (a bytearray cannot be resized while it
     * is exported), and `fields` and `hex` are this call's own: no GIL needed to hash. */
    Py_BEGIN_ALLOW_THREADS
    failed = hash_records((const unsigned char *)view.buf, fields, slots, hex);
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL's SHA-256 reported a failure");
        goto done;
    }
    result = PyList_New(slots);
    if (result == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < slots; i++) {
        PyObject *text = PyUnicode_New(HEX_SIZE, 127);
        if (text == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        memcpy(PyUnicode_1BYTE_DATA(text), hex + i * HEX_SIZE, HEX_SIZE);
        PyList_SET_ITEM(result, i, text);
    }
done:
    PyMem_Free(fields);
    PyMem_Free(hex);
    PyBuffer_Release(&view);
    return result;
}

/* ---- encoding ------------------------------------------------------------------------ */

/* A growing bytes object: the records section is written straight into it. */
typedef struct {
    PyObject *bytes;
    Py_ssize_t len;
    Py_ssize_t cap;
} Out;

static int
out_reserve(Out *o, Py_ssize_t extra)
{
    if (extra <= o->cap - o->len) {
        return 0;
    }
    if (extra > PY_SSIZE_T_MAX - o->len) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t need = o->len + extra;
    Py_ssize_t cap = o->cap < PY_SSIZE_T_MAX / 2 ? o->cap * 2 : PY_SSIZE_T_MAX;
    if (cap < need) {
        cap = need;
    }
    if (_PyBytes_Resize(&o->bytes, cap) < 0) { /* frees o->bytes and sets it NULL on error */
        return -1;
    }
    o->cap = cap;
    return 0;
}

static inline uint64_t
zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (0 - ((uint64_t)v >> 63));
}

static inline Py_ssize_t
varint_size(uint64_t z)
{
    Py_ssize_t n = 1;
    while (z >= 0x80) {
        z >>= 7;
        n++;
    }
    return n;
}

static inline char *
put_varint(char *p, uint64_t z)
{
    while (z >= 0x80) {
        *p++ = (char)((z & 0x7F) | 0x80);
        z >>= 7;
    }
    *p++ = (char)z;
    return p;
}

/* A key, value or header value: None (len -1) or any contiguous bytes-like object. */
typedef struct {
    const char *data;
    Py_ssize_t len;
    Py_buffer view;
    int has_view;
} Blob;

static int
blob_get(PyObject *obj, Blob *b)
{
    b->has_view = 0;
    if (obj == Py_None) {
        b->data = NULL;
        b->len = -1;
        return 0;
    }
    if (PyBytes_CheckExact(obj)) {
        b->data = PyBytes_AS_STRING(obj);
        b->len = PyBytes_GET_SIZE(obj);
        return 0;
    }
    if (PyObject_GetBuffer(obj, &b->view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    b->has_view = 1;
    b->data = (const char *)b->view.buf;
    b->len = b->view.len;
    return 0;
}

static void
blob_release(Blob *b)
{
    if (b->has_view) {
        PyBuffer_Release(&b->view);
        b->has_view = 0;
    }
}

static inline Py_ssize_t
blob_size(const Blob *b)
{
    return b->len < 0 ? 1 : varint_size(zigzag(b->len)) + b->len;
}

static inline char *
put_blob(char *p, const Blob *b)
{
    if (b->len < 0) {
        *p++ = 1; /* zigzag -1: null */
        return p;
    }
    p = put_varint(p, zigzag(b->len));
    if (b->len > 0) {
        memcpy(p, b->data, (size_t)b->len);
    }
    return p + b->len;
}

/* Encode a record's header array (count, then each UTF-8 key and nullable value) into a
 * scratch buffer, which is reused from record to record. */
static int
encode_headers(PyObject *headers, Out *scratch)
{
    /* A tuple of its own, so no code run below can change the sequence under us. */
    PyObject *seq = PySequence_Tuple(headers);
    if (seq == NULL) {
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(seq);
    PyObject **items = ((PyTupleObject *)seq)->ob_item;
    scratch->len = 0;
    if (out_reserve(scratch, 10) < 0) {
        goto fail;
    }
    scratch->len = put_varint(PyBytes_AS_STRING(scratch->bytes), zigzag(n))
                   - PyBytes_AS_STRING(scratch->bytes);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = items[i];
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "a record header must be a (str, bytes | None) tuple");
            goto fail;
        }
        PyObject *key = PyTuple_GET_ITEM(pair, 0);
        if (!PyUnicode_Check(key)) {
            PyErr_Format(PyExc_TypeError, "a record header key must be str, not %.100s",
                         Py_TYPE(key)->tp_name);
            goto fail;
        }
        PyObject *raw = PyUnicode_AsEncodedString(key, "utf-8", "surrogateescape");
        if (raw == NULL) {
            goto fail;
        }
        Blob k = {PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), {0}, 0};
        Blob v;
        if (blob_get(PyTuple_GET_ITEM(pair, 1), &v) < 0) {
            Py_DECREF(raw);
            goto fail;
        }
        Py_ssize_t need = blob_size(&k);
        Py_ssize_t more = blob_size(&v);
        int ok = more <= PY_SSIZE_T_MAX - need && out_reserve(scratch, need + more) == 0;
        if (ok) {
            char *p = PyBytes_AS_STRING(scratch->bytes) + scratch->len;
            p = put_blob(p, &k);
            p = put_blob(p, &v);
            scratch->len = p - PyBytes_AS_STRING(scratch->bytes);
        }
        else if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        blob_release(&v);
        Py_DECREF(raw);
        if (!ok) {
            goto fail;
        }
    }
    Py_DECREF(seq);
    return 0;
fail:
    Py_DECREF(seq);
    return -1;
}

/* An int field of a record as int64 (OverflowError beyond it, as no varlong holds more). */
static int
get_int64(PyObject *obj, int64_t *out)
{
    long long v = PyLong_AsLongLong(obj);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

/* Append one record (attributes, ts delta, offset delta, key, value, headers) to out. */
static int
encode_one(PyObject *record, Out *out, Out *scratch)
{
    PyObject *fields;
    if (PyTuple_Check(record)) {
        fields = Py_NewRef(record);
    }
    else {
        fields = PySequence_Tuple(record);
        if (fields == NULL) {
            return -1;
        }
    }
    if (PyTuple_GET_SIZE(fields) != 6) {
        PyErr_Format(PyExc_ValueError, "a record has 6 fields, not %zd",
                     PyTuple_GET_SIZE(fields));
        Py_DECREF(fields);
        return -1;
    }
    int64_t attributes, ts_delta, offset_delta;
    Blob key, value;
    int have_key = 0, have_value = 0, rc = -1;
    if (get_int64(PyTuple_GET_ITEM(fields, 0), &attributes) < 0
        || get_int64(PyTuple_GET_ITEM(fields, 1), &ts_delta) < 0
        || get_int64(PyTuple_GET_ITEM(fields, 2), &offset_delta) < 0) {
        goto done;
    }
    if (attributes < -128 || attributes > 255) {
        PyErr_Format(PyExc_ValueError, "record attributes %lld do not fit in a byte",
                     (long long)attributes);
        goto done;
    }
    if (blob_get(PyTuple_GET_ITEM(fields, 3), &key) < 0) {
        goto done;
    }
    have_key = 1;
    if (blob_get(PyTuple_GET_ITEM(fields, 4), &value) < 0) {
        goto done;
    }
    have_value = 1;
    PyObject *headers = PyTuple_GET_ITEM(fields, 5);
    int has_headers = PyObject_IsTrue(headers);
    if (has_headers < 0) {
        goto done;
    }
    Py_ssize_t headers_len = 1;
    if (has_headers) {
        if (encode_headers(headers, scratch) < 0) {
            goto done;
        }
        headers_len = scratch->len;
    }
    /* Every part is an existing object's size, so the sum stays far below the limit. */
    Py_ssize_t body = 1 + varint_size(zigzag(ts_delta)) + varint_size(zigzag(offset_delta))
                      + blob_size(&key) + blob_size(&value) + headers_len;
    if (out_reserve(out, varint_size(zigzag(body)) + body) < 0) {
        goto done;
    }
    char *p = PyBytes_AS_STRING(out->bytes) + out->len;
    p = put_varint(p, zigzag(body));
    *p++ = (char)(uint8_t)(attributes & 0xFF);
    p = put_varint(p, zigzag(ts_delta));
    p = put_varint(p, zigzag(offset_delta));
    p = put_blob(p, &key);
    p = put_blob(p, &value);
    if (has_headers) {
        memcpy(p, PyBytes_AS_STRING(scratch->bytes), (size_t)headers_len);
        p += headers_len;
    }
    else {
        *p++ = 0;
    }
    out->len = p - PyBytes_AS_STRING(out->bytes);
    rc = 0;
done:
    if (have_key) {
        blob_release(&key);
    }
    if (have_value) {
        blob_release(&value);
    }
    Py_DECREF(fields);
    return rc;
}

PyDoc_STRVAR(encode_records_doc,
"encode_records(records, parts) -> None\n\n"
"Append the encoded records section to the list `parts` (as one bytes object; nothing\n"
"for no records). The contract of records._py_encode_records.");

static PyObject *
encode_records(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *records, *parts;
    if (!PyArg_ParseTuple(args, "OO!:encode_records", &records, &PyList_Type, &parts)) {
        return NULL;
    }
    /* A tuple of its own (a list is copied): the __index__ or __bool__ of a field could
     * otherwise change the list while its items are being read. */
    PyObject *seq = PySequence_Tuple(records);
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(seq);
    PyObject **items = ((PyTupleObject *)seq)->ob_item;
    if (n == 0) {
        Py_DECREF(seq);
        Py_RETURN_NONE;
    }
    /* A first guess at the size from keys and values, so the buffer rarely grows. */
    Py_ssize_t guess = 64;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *r = items[i];
        guess += 16;
        if (PyTuple_Check(r) && PyTuple_GET_SIZE(r) == 6) {
            PyObject *k = PyTuple_GET_ITEM(r, 3), *v = PyTuple_GET_ITEM(r, 4);
            if (PyBytes_CheckExact(k)) {
                guess += PyBytes_GET_SIZE(k);
            }
            if (PyBytes_CheckExact(v)) {
                guess += PyBytes_GET_SIZE(v);
            }
        }
        if (guess > (PY_SSIZE_T_MAX >> 2)) {
            guess = PY_SSIZE_T_MAX >> 2;
        }
    }
    Out out = {PyBytes_FromStringAndSize(NULL, guess), 0, guess};
    Out scratch = {PyBytes_FromStringAndSize(NULL, 64), 0, 64};
    if (out.bytes == NULL || scratch.bytes == NULL) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (encode_one(items[i], &out, &scratch) < 0) {
            goto fail;
        }
    }
    if (_PyBytes_Resize(&out.bytes, out.len) < 0) {
        goto fail;
    }
    int appended = PyList_Append(parts, out.bytes);
    Py_CLEAR(out.bytes);
    Py_DECREF(scratch.bytes);
    Py_DECREF(seq);
    if (appended < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
fail:
    Py_XDECREF(out.bytes);
    Py_XDECREF(scratch.bytes);
    Py_DECREF(seq);
    return NULL;
}

/* ---- module -------------------------------------------------------------------------- */

PyDoc_STRVAR(init_doc,
"init(record_type, error_type) -> None\n\n"
"Set the Record NamedTuple the decoder builds and the RecordsError class it raises.");

static PyObject *
init(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *rtype, *etype;
    if (!PyArg_ParseTuple(args, "O!O:init", &PyType_Type, &rtype, &etype)) {
        return NULL;
    }
    PyTypeObject *t = (PyTypeObject *)rtype;
    if (!PyType_IsSubtype(t, &PyTuple_Type) || t->tp_basicsize != PyTuple_Type.tp_basicsize
        || t->tp_itemsize != PyTuple_Type.tp_itemsize || t->tp_dictoffset != 0) {
        PyErr_SetString(PyExc_TypeError,
                        "record_type must be a tuple subclass with no instance attributes");
        return NULL;
    }
    if (!PyExceptionClass_Check(etype)) {
        PyErr_SetString(PyExc_TypeError, "error_type must be an exception class");
        return NULL;
    }
    Py_INCREF(rtype);
    Py_XSETREF(record_type, t);
    Py_INCREF(etype);
    Py_XSETREF(records_error, etype);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"init", init, METH_VARARGS, init_doc},
    {"decode_records", decode_records, METH_VARARGS, decode_records_doc},
    {"encode_records", encode_records, METH_VARARGS, encode_records_doc},
    {"record_layout", record_layout, METH_VARARGS, record_layout_doc},
    {"bind_sha256", bind_sha256, METH_VARARGS, bind_sha256_doc},
    {"record_digests", record_digests, METH_VARARGS, record_digests_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "streamctl.kafka._records_c",
    "C accelerator for magic-2 record sections (reference: streamctl.kafka.records).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__records_c(void)
{
    return PyModule_Create(&module_def);
}
