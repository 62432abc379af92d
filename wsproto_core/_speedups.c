/* Optional accelerator for the one loop Python cannot make fast: XOR-ing a
 * payload with the 4-byte WebSocket mask. The pure-Python fallback in
 * masking.py gives the same results; tests run both. Built by setup.py as an
 * optional extension, so a machine without a compiler still installs. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "structmember.h"  /* READONLY */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* apply_mask(data, mask, prefix=b"") -> prefix + (data XOR mask).
 * The prefix lets a client write a frame header and its masked payload into
 * one allocation instead of masking and then concatenating a copy. `data`
 * may also be an ASCII str, masked as its bytes: a client's text then takes
 * one pass and one allocation, where encoding it first took two of each
 * (and for large messages the second fresh buffer costs page faults). */
static PyObject *
apply_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data = {0}, mask, prefix = {0};
    PyObject *result = NULL;
    const unsigned char *in;
    Py_ssize_t len;

    if (nargs != 2 && nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "apply_mask(data, mask, prefix=b'') takes 2 or 3 arguments");
        return NULL;
    }
    if (PyUnicode_Check(args[0])) {
#if PY_VERSION_HEX < 0x030C0000
        if (PyUnicode_READY(args[0]) < 0) {
            return NULL;
        }
#endif
        if (!PyUnicode_IS_ASCII(args[0])) {
            PyErr_SetString(PyExc_ValueError, "only ASCII text is masked without encoding");
            return NULL;
        }
        in = PyUnicode_1BYTE_DATA(args[0]);
        len = PyUnicode_GET_LENGTH(args[0]);
    }
    else {
        if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
            return NULL;
        }
        in = (const unsigned char *)data.buf;
        len = data.len;
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
    result = PyBytes_FromStringAndSize(NULL, prefix.len + len);
    if (result == NULL) {
        goto done;
    }
    {
        const unsigned char *m = (const unsigned char *)mask.buf;
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
        if (prefix.len) {
            memcpy(out, prefix.buf, prefix.len);
            out += prefix.len;
        }
        Py_ssize_t i = 0;
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

/* Constructor(cls, *fields): a callable that makes `cls(**dict(zip(fields, args)))`
 * for a frozen, slotted event class, by allocating the object and storing each
 * value through the field's own slot descriptor, as `descriptor.__set__` would.
 * That skips the frozen dataclass's `__init__` (one `object.__setattr__` per
 * field), which cost more than parsing the frame the event reports. events.py
 * has the same in Python, and checks that `fields` are all the class's fields. */
#define MAX_FIELDS 2

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyTypeObject *cls;
    Py_ssize_t count;
    PyObject *descriptors[MAX_FIELDS];
} Constructor;

static PyObject *empty_tuple;

static PyObject *
constructor_call(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Constructor *self = (Constructor *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (self->cls == NULL) {  /* cleared by the garbage collector */
        PyErr_SetString(PyExc_TypeError, "this constructor was cleared");
        return NULL;
    }
    if (nargs != self->count || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_Format(PyExc_TypeError, "%s constructor takes %zd positional arguments",
                     self->cls->tp_name, self->count);
        return NULL;
    }
    PyObject *event = self->cls->tp_new(self->cls, empty_tuple, NULL);
    if (event == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        PyObject *descriptor = self->descriptors[i];
        if (Py_TYPE(descriptor)->tp_descr_set(descriptor, event, args[i]) < 0) {
            Py_DECREF(event);
            return NULL;
        }
    }
    return event;
}

/* A writable slot (a member descriptor) of `cls` itself or of a base. */
static int
is_settable_slot(PyTypeObject *cls, PyObject *descriptor)
{
    if (!Py_IS_TYPE(descriptor, &PyMemberDescr_Type)) {
        return 0;
    }
    PyMemberDescrObject *member = (PyMemberDescrObject *)descriptor;
    return PyType_IsSubtype(cls, PyDescr_TYPE(member)) && !(member->d_member->flags & READONLY);
}

static PyObject *
constructor_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    Py_ssize_t count = PyTuple_GET_SIZE(args) - 1;
    if (kwargs != NULL || count < 1 || count > MAX_FIELDS || !PyType_Check(PyTuple_GET_ITEM(args, 0))) {
        PyErr_SetString(PyExc_TypeError, "Constructor(cls, field[, field]) takes a class and 1 or 2 field names");
        return NULL;
    }
    PyTypeObject *cls = (PyTypeObject *)PyTuple_GET_ITEM(args, 0);
    if (cls->tp_new == NULL) {
        PyErr_Format(PyExc_TypeError, "%s cannot be instantiated", cls->tp_name);
        return NULL;
    }
    Constructor *self = (Constructor *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = constructor_call;
    self->cls = (PyTypeObject *)Py_NewRef(cls);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *name = PyTuple_GET_ITEM(args, i + 1);
        PyObject *descriptor = PyObject_GetAttr((PyObject *)cls, name);
        if (descriptor == NULL) {
            Py_DECREF(self);
            return NULL;
        }
        self->descriptors[i] = descriptor;
        self->count = i + 1;  /* what dealloc releases */
        if (!is_settable_slot(cls, descriptor)) {
            PyErr_Format(PyExc_TypeError, "%R is not a writable slot of %s", name, cls->tp_name);
            Py_DECREF(self);
            return NULL;
        }
        for (Py_ssize_t j = 0; j < i; j++) {
            if (self->descriptors[j] == descriptor) {
                PyErr_Format(PyExc_TypeError, "field %R given twice", name);
                Py_DECREF(self);
                return NULL;
            }
        }
    }
    return (PyObject *)self;
}

static int
constructor_traverse(Constructor *self, visitproc visit, void *arg)
{
    Py_VISIT(self->cls);
    for (Py_ssize_t i = 0; i < self->count; i++) {
        Py_VISIT(self->descriptors[i]);
    }
    return 0;
}

static int
constructor_clear(Constructor *self)
{
    for (Py_ssize_t i = 0; i < self->count; i++) {
        Py_CLEAR(self->descriptors[i]);
    }
    self->count = 0;
    Py_CLEAR(self->cls);
    return 0;
}

static void
constructor_dealloc(Constructor *self)
{
    PyObject_GC_UnTrack(self);
    constructor_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject ConstructorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "wsproto_core._speedups.Constructor",
    .tp_basicsize = sizeof(Constructor),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_HAVE_GC,
    .tp_vectorcall_offset = offsetof(Constructor, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_new = constructor_new,
    .tp_traverse = (traverseproc)constructor_traverse,
    .tp_clear = (inquiry)constructor_clear,
    .tp_dealloc = (destructor)constructor_dealloc,
    .tp_doc = "Constructor(cls, *fields): a positional constructor of a frozen slotted class.",
};

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
    empty_tuple = PyTuple_New(0);
    if (empty_tuple == NULL || PyType_Ready(&ConstructorType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "Constructor", (PyObject *)&ConstructorType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
