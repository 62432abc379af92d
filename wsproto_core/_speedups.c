/* Optional accelerator for the one loop Python cannot make fast: XOR-ing a
 * payload with the 4-byte WebSocket mask. The pure-Python fallback in
 * masking.py gives the same results; tests run both. Built by setup.py as an
 * optional extension, so a machine without a compiler still installs. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* apply_mask(data, mask, prefix=b"") -> prefix + (data XOR mask).
 * The prefix lets a client write a frame header and its masked payload into
 * one allocation instead of masking and then concatenating a copy. */
static PyObject *
apply_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, mask, prefix = {0};
    PyObject *result = NULL;

    if (nargs != 2 && nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "apply_mask(data, mask, prefix=b'') takes 2 or 3 arguments");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &mask, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (nargs == 3 && PyObject_GetBuffer(args[2], &prefix, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&mask);
        PyBuffer_Release(&data);
        return NULL;
    }
    if (mask.len != 4) {
        PyErr_SetString(PyExc_ValueError, "mask must be 4 bytes");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, prefix.len + data.len);
    if (result == NULL) {
        goto done;
    }
    {
        const unsigned char *in = (const unsigned char *)data.buf;
        const unsigned char *m = (const unsigned char *)mask.buf;
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
        if (prefix.len) {
            memcpy(out, prefix.buf, prefix.len);
            out += prefix.len;
        }
        Py_ssize_t len = data.len, i = 0;
        unsigned char wide[8] = {m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]};
        uint64_t m64;
        memcpy(&m64, wide, 8);
        /* Steps of 8 keep the mask phase aligned; memcpy avoids unaligned
         * loads, and compilers turn this loop into vector code. */
        for (; i + 8 <= len; i += 8) {
            uint64_t word;
            memcpy(&word, in + i, 8);
            word ^= m64;
            memcpy(out + i, &word, 8);
        }
        for (; i < len; i++) {
            out[i] = in[i] ^ m[i & 3];
        }
    }
done:
    if (nargs == 3) {
        PyBuffer_Release(&prefix);
    }
    PyBuffer_Release(&mask);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL,
     "apply_mask(data, mask, prefix=b'') -> prefix + data XOR the repeated 4-byte mask."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "wsproto_core._speedups", NULL, 0, speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&speedups_module);
}
