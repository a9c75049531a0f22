/* bind_config.c: model configs from dicts of named fields (bind_config.h). */
#include "bind_config.h"

#include <string.h>

static int field_int(PyObject *v, const char *what, const char *name, long long *out)
{
    if (!PyLong_Check(v) || PyBool_Check(v)) {
        PyErr_Format(PyExc_TypeError, "%s field '%s' must be an int, got %.80s", what, name,
                     Py_TYPE(v)->tp_name);
        return -1;
    }
    int overflow = 0;
    *out = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (*out == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s field '%s' is out of the int64 range", what, name);
        return -1;
    }
    return 0;
}

static int field_fill(PyObject *v, const char *what, const tc_py_field *f, char *out)
{
    long long i;
    switch (f->kind) {
    case TC_PY_FIELD_INT64:
        if (field_int(v, what, f->name, &i)) return -1;
        *(int64_t *)(out + f->offset) = (int64_t)i;
        return 0;
    case TC_PY_FIELD_FLAG:
        if (PyBool_Check(v))
            i = v == Py_True;
        else if (field_int(v, what, f->name, &i))
            return -1;
        if (i != 0 && i != 1) {
            PyErr_Format(PyExc_ValueError, "%s field '%s' must be a bool (or 0 / 1), got %lld",
                         what, f->name, i);
            return -1;
        }
        *(int *)(out + f->offset) = (int)i;
        return 0;
    case TC_PY_FIELD_OPTION:
        if (field_int(v, what, f->name, &i)) return -1;
        if (i < 0 || i >= tc_option_count(f->option)) {
            PyErr_Format(PyExc_ValueError, "%s field '%s' must be a %s index in [0, %d), got %lld",
                         what, f->name, tc_option_kind_name(f->option),
                         tc_option_count(f->option), i);
            return -1;
        }
        *(int *)(out + f->offset) = (int)i;
        return 0;
    default: /* TC_PY_FIELD_DOUBLE */
        if (PyBool_Check(v) || !(PyFloat_Check(v) || PyLong_Check(v))) {
            PyErr_Format(PyExc_TypeError, "%s field '%s' must be a float, got %.80s", what,
                         f->name, Py_TYPE(v)->tp_name);
            return -1;
        }
        const double d = PyFloat_AsDouble(v);
        if (d == -1.0 && PyErr_Occurred()) return -1;
        *(double *)(out + f->offset) = d;
        return 0;
    }
}

static int config_fill(PyObject *obj, const char *what, const tc_py_field *fields, void *out)
{
    Py_ssize_t n = 0;
    for (const tc_py_field *f = fields; f->name; f++, n++) {
        PyObject *v = PyDict_GetItemString(obj, f->name); /* borrowed from the snapshot */
        if (!v) {
            PyErr_Format(PyExc_TypeError, "%s is missing field '%s'", what, f->name);
            return -1;
        }
        if (field_fill(v, what, f, out)) return -1;
    }
    if (PyDict_Size(obj) == n) return 0;
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(obj, &pos, &key, &value)) {
        const char *k = PyUnicode_Check(key) ? PyUnicode_AsUTF8(key) : NULL;
        int known = 0;
        for (const tc_py_field *f = fields; k && f->name && !known; f++)
            known = strcmp(f->name, k) == 0;
        if (!known) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "%s has unknown field %R", what, key);
            return -1;
        }
    }
    return 0; /* not reached: a dict of n known keys has size n */
}

int tc_py_config_fill(PyObject *obj, const char *what, const tc_py_field *fields, void *out)
{
    if (!PyDict_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a dict of named fields, got %.80s", what,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    /* read a snapshot: converting a value can run Python code (a float field's __float__)
     * that mutates the caller's dict, which must not free what is being read */
    PyObject *snap = PyDict_Copy(obj);
    if (!snap) return -1;
    const int st = config_fill(snap, what, fields, out);
    Py_DECREF(snap);
    return st;
}

int tc_py_config_layers(const char *what, const char *name, int64_t value)
{
    if (value <= TC_MAX_LAYERS) return 0;
    PyErr_Format(PyExc_ValueError, "%s field '%s' (a layer count) must be <= %d, got %lld",
                 what, name, TC_MAX_LAYERS, (long long)value);
    return -1;
}
