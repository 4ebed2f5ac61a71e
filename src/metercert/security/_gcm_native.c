/*
 * metercert.security._gcm_native: the per-APDU AES-GCM of ApduCipher through OpenSSL's EVP
 * API (libcrypto), with the service-specific framing done in the same call.
 *
 * Internal: metercert.security.protection.ApduCipher uses it when it imports and falls back
 * to the pure-Python path (metercert.security._gcm, on the `cryptography` package) when it
 * does not, or when METERCERT_PURE_PYTHON=1. tests/security/test_native_gcm.py checks that
 * both give the same bytes and the same refusals.
 *
 * Why: DLMS truncates the GCM tag to 12 bytes. `cryptography`'s AESGCM verifies only full
 * 16-byte tags, so in Python a verification costs two GCM passes; OpenSSL's GCM takes a
 * 12-byte expected tag (EVP_CTRL_GCM_SET_TAG) and compares it in constant time
 * (CRYPTO_memcmp) in EVP_DecryptFinal_ex. The key schedule is set once per object; a call
 * only sets the IV.
 *
 * One object = one key, one security control byte, the own and the peer system title and
 * the AAD prefix (SC || AK): what ApduCipher binds. Modes: authenticated and encrypted,
 * authenticated only (GMAC over AAD || plaintext), encrypted only (the GCM keystream); the
 * unprotected mode has no key and stays in Python.
 *
 * Methods return None for anything they do not serve (an unknown tag, a length form other
 * than 1, 2 or 3 bytes, another SC byte, a bad counter): the Python caller then takes its
 * own path, which gives the precise error. Authentication failures raise the exception class
 * given to the constructor (metercert's AuthenticationFailed), one for every cause.
 *
 * The GIL is kept: an APDU is a microsecond of work (releasing and taking it back would cost
 * a good part of that), and the GIL is what serialises callers that share the object's
 * EVP contexts.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdio.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#define TAG_BYTES 12
#define MODE_AUTH 1
#define MODE_ENC 2

typedef struct {
    PyObject_HEAD
    EVP_CIPHER_CTX *enc;  /* key set, encrypt direction */
    EVP_CIPHER_CTX *dec;  /* key set, decrypt direction */
    int mode;
    unsigned char sc_byte;
    unsigned char own[8];
    unsigned char peer[8];
    int has_peer;
    unsigned char *aad;   /* SC || AK for authenticated modes; secret: cleansed on free */
    Py_ssize_t aad_len;
    PyObject *heads[256]; /* plain tag -> the APDU's first bytes in the bound form, or NULL */
    unsigned char plain_tags[256]; /* outer service-specific tag -> plain tag, 0: none */
    PyObject *auth_failed;
} Gcm;

static void Gcm_dealloc(Gcm *self) {
    if (self->enc) EVP_CIPHER_CTX_free(self->enc);  /* frees (and cleanses) the key schedule */
    if (self->dec) EVP_CIPHER_CTX_free(self->dec);
    if (self->aad) {
        OPENSSL_cleanse(self->aad, (size_t)self->aad_len);
        PyMem_Free(self->aad);
    }
    for (int i = 0; i < 256; i++) Py_CLEAR(self->heads[i]);
    Py_CLEAR(self->auth_failed);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static const EVP_CIPHER *cipher_for_key(Py_ssize_t len) {
    if (len == 16) return EVP_aes_128_gcm();
    if (len == 32) return EVP_aes_256_gcm();
    return NULL;
}

/* Gcm(key, aad, own_title, peer_title, sc_byte, mode, heads, plain_tags, auth_failed) */
static int Gcm_init(Gcm *self, PyObject *args, PyObject *kwds) {
    Py_buffer key, aad, own, plain_tags;
    if (kwds != NULL && PyDict_GET_SIZE(kwds) != 0) {
        PyErr_SetString(PyExc_TypeError, "Gcm takes positional arguments only");
        return -1;
    }
    PyObject *peer, *heads, *auth_failed;
    int sc_byte, mode;
    int rc = -1;
    if (self->enc || self->dec || self->aad || self->auth_failed) {
        PyErr_SetString(PyExc_TypeError, "Gcm objects are initialised once");
        return -1;
    }
    for (int i = 0; i < 256; i++) Py_CLEAR(self->heads[i]);  /* an earlier failed init */
    if (!PyArg_ParseTuple(args, "y*y*y*OiiOy*O:Gcm", &key, &aad, &own, &peer, &sc_byte, &mode,
                          &heads, &plain_tags, &auth_failed))
        return -1;
    const EVP_CIPHER *cipher = cipher_for_key(key.len);
    if (cipher == NULL) {
        PyErr_SetString(PyExc_ValueError, "AES-GCM key must be 16 or 32 bytes");
        goto done;
    }
    if (own.len != 8 || plain_tags.len != 256 || sc_byte < 0 || sc_byte > 255 ||
        mode < 1 || mode > 3) {
        PyErr_SetString(PyExc_ValueError, "bad Gcm parameters");
        goto done;
    }
    if (peer != Py_None) {
        if (!PyBytes_Check(peer) || PyBytes_GET_SIZE(peer) != 8) {
            PyErr_SetString(PyExc_ValueError, "peer title must be 8 bytes or None");
            goto done;
        }
        memcpy(self->peer, PyBytes_AS_STRING(peer), 8);
        self->has_peer = 1;
    }
    if (!PyTuple_Check(heads) || PyTuple_GET_SIZE(heads) != 256) {
        PyErr_SetString(PyExc_ValueError, "heads must be a tuple of 256 entries");
        goto done;
    }
    for (int i = 0; i < 256; i++) {
        PyObject *h = PyTuple_GET_ITEM(heads, i);
        if (h == Py_None) continue;
        if (!PyBytes_Check(h)) {
            PyErr_SetString(PyExc_ValueError, "heads entries must be bytes or None");
            goto done;
        }
        Py_INCREF(h);
        self->heads[i] = h;
    }
    if (!PyType_Check(auth_failed)) {
        PyErr_SetString(PyExc_TypeError, "auth_failed must be an exception class");
        goto done;
    }
    memcpy(self->plain_tags, plain_tags.buf, 256);
    memcpy(self->own, own.buf, 8);
    self->sc_byte = (unsigned char)sc_byte;
    self->mode = mode;
    Py_INCREF(auth_failed);
    self->auth_failed = auth_failed;
    self->aad_len = aad.len;
    self->aad = PyMem_Malloc(aad.len ? (size_t)aad.len : 1);
    if (self->aad == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    memcpy(self->aad, aad.buf, (size_t)aad.len);
    self->enc = EVP_CIPHER_CTX_new();
    self->dec = EVP_CIPHER_CTX_new();
    if (self->enc == NULL || self->dec == NULL ||
        EVP_EncryptInit_ex(self->enc, cipher, NULL, key.buf, NULL) != 1 ||
        EVP_DecryptInit_ex(self->dec, cipher, NULL, key.buf, NULL) != 1) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL could not set up AES-GCM");
        goto done;
    }
    rc = 0;
done:
    PyBuffer_Release(&key);
    PyBuffer_Release(&aad);
    PyBuffer_Release(&own);
    PyBuffer_Release(&plain_tags);
    return rc;
}

static PyObject *openssl_error(void) {
    PyErr_SetString(PyExc_RuntimeError, "OpenSSL AES-GCM call failed");
    return NULL;
}

/* EVP_{En,De}cryptUpdate over any length (EVP takes int lengths): 1 on success. `out` NULL:
 * the bytes are additional authenticated data. */
#define CHUNK (1 << 30)
static int update(EVP_CIPHER_CTX *c, int decrypt, unsigned char *out, const unsigned char *in,
                  Py_ssize_t len) {
    while (len > 0) {
        int n = len > CHUNK ? CHUNK : (int)len, outl;
        if ((decrypt ? EVP_DecryptUpdate(c, out, &outl, in, n)
                     : EVP_EncryptUpdate(c, out, &outl, in, n)) != 1)
            return 0;
        in += n;
        if (out != NULL) out += n;
        len -= n;
    }
    return 1;
}

/* The payload of `mode` for `plain` into `out` (len + 12 bytes for authenticated modes,
 * len for encrypt-only). Returns 0, or -1 with nothing set (caller raises). */
static int seal_into(Gcm *self, const unsigned char *iv, const unsigned char *plain,
                     Py_ssize_t len, unsigned char *out) {
    EVP_CIPHER_CTX *c = self->enc;
    int outl;
    unsigned char tag[16];
    if (EVP_EncryptInit_ex(c, NULL, NULL, NULL, iv) != 1) return -1;
    if (self->mode & MODE_AUTH) {
        if (!update(c, 0, NULL, self->aad, self->aad_len)) return -1;
        if (self->mode & MODE_ENC) {
            if (!update(c, 0, out, plain, len)) return -1;
        } else {
            /* GMAC: the plaintext is authenticated data and goes out as it is */
            if (!update(c, 0, NULL, plain, len)) return -1;
            memcpy(out, plain, (size_t)len);
        }
        if (EVP_EncryptFinal_ex(c, out + len, &outl) != 1) return -1;
        if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1) return -1;
        memcpy(out + len, tag, TAG_BYTES);
    } else {
        /* encrypt-only: GCM's CTR part, no tag (the next IV set resets the context) */
        if (!update(c, 0, out, plain, len)) return -1;
    }
    return 0;
}

/* Verify and decipher `payload` into a new bytes object; NULL with auth_failed set on any
 * mismatch (tag, short payload, plain tag), or another exception on an OpenSSL error. */
static PyObject *open_payload(Gcm *self, const unsigned char *iv, const unsigned char *payload,
                              Py_ssize_t len, int plain_tag) {
    PyObject *result;
    unsigned char *out;
    int outl;
    Py_ssize_t ptlen;
    if (self->mode & MODE_AUTH) {
        EVP_CIPHER_CTX *c = self->dec;
        if (len < TAG_BYTES) goto fail;
        ptlen = len - TAG_BYTES;
        result = PyBytes_FromStringAndSize(NULL, ptlen);
        if (result == NULL) return NULL;
        out = (unsigned char *)PyBytes_AS_STRING(result);
        if (EVP_DecryptInit_ex(c, NULL, NULL, NULL, iv) != 1) goto ossl;
        if (!update(c, 1, NULL, self->aad, self->aad_len)) goto ossl;
        if (self->mode & MODE_ENC) {
            if (!update(c, 1, out, payload, ptlen)) goto ossl;
        } else {
            if (!update(c, 1, NULL, payload, ptlen)) goto ossl;
            memcpy(out, payload, (size_t)ptlen);
        }
        if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_BYTES,
                                (void *)(payload + ptlen)) != 1)
            goto ossl;
        if (EVP_DecryptFinal_ex(c, out + ptlen, &outl) != 1) {  /* constant-time tag compare */
            OPENSSL_cleanse(out, (size_t)ptlen);
            Py_DECREF(result);
            goto fail;
        }
    } else {
        EVP_CIPHER_CTX *c = self->enc;  /* CTR is its own inverse */
        ptlen = len;
        result = PyBytes_FromStringAndSize(NULL, ptlen);
        if (result == NULL) return NULL;
        out = (unsigned char *)PyBytes_AS_STRING(result);
        if (EVP_EncryptInit_ex(c, NULL, NULL, NULL, iv) != 1) goto ossl;
        if (!update(c, 0, out, payload, ptlen)) goto ossl;
    }
    if (plain_tag >= 0 && (ptlen < 1 || out[0] != (unsigned char)plain_tag)) {
        /* the outer tag is not covered by the GCM tag: it must match the protected service */
        OPENSSL_cleanse(out, (size_t)ptlen);
        Py_DECREF(result);
        goto fail;
    }
    return result;
ossl:
    Py_DECREF(result);
    return openssl_error();
fail:
    PyErr_SetNone(self->auth_failed);
    return NULL;
}

/* protect(plaintext, invocation_counter, head=None) -> APDU bytes, or None (not served) */
static PyObject *Gcm_protect(Gcm *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 2 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "protect(plaintext, invocation_counter, head=None)");
        return NULL;
    }
    PyObject *plain_obj = args[0], *ic_obj = args[1];
    if (!PyBytes_Check(plain_obj) || !PyLong_Check(ic_obj)) Py_RETURN_NONE;
    Py_ssize_t len = PyBytes_GET_SIZE(plain_obj);
    if (len == 0) Py_RETURN_NONE;
    const unsigned char *plain = (const unsigned char *)PyBytes_AS_STRING(plain_obj);
    PyObject *head = nargs == 3 ? args[2] : self->heads[plain[0]];
    if (head == NULL || !PyBytes_Check(head)) Py_RETURN_NONE;
    int overflow = 0;
    long long ic = PyLong_AsLongLongAndOverflow(ic_obj, &overflow);
    if (ic == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    if (overflow || ic < 0 || ic > 0xFFFFFFFFLL) Py_RETURN_NONE;
    Py_ssize_t payload = len + ((self->mode & MODE_AUTH) ? TAG_BYTES : 0);
    Py_ssize_t content = payload + 5;
    int lbytes = content < 0x80 ? 1 : content < 0x100 ? 2 : content < 0x10000 ? 3 : 0;
    if (lbytes == 0) Py_RETURN_NONE;  /* longer BER forms: the Python path */
    Py_ssize_t hlen = PyBytes_GET_SIZE(head);
    PyObject *result = PyBytes_FromStringAndSize(NULL, hlen + lbytes + content);
    if (result == NULL) return NULL;
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(result);
    memcpy(p, PyBytes_AS_STRING(head), (size_t)hlen);
    p += hlen;
    if (lbytes == 1) {
        *p++ = (unsigned char)content;
    } else if (lbytes == 2) {
        *p++ = 0x81;
        *p++ = (unsigned char)content;
    } else {
        *p++ = 0x82;
        *p++ = (unsigned char)(content >> 8);
        *p++ = (unsigned char)content;
    }
    *p++ = self->sc_byte;
    unsigned char iv[12];
    memcpy(iv, self->own, 8);
    iv[8] = (unsigned char)(ic >> 24);
    iv[9] = (unsigned char)(ic >> 16);
    iv[10] = (unsigned char)(ic >> 8);
    iv[11] = (unsigned char)ic;
    memcpy(p, iv + 8, 4);
    p += 4;
    if (seal_into(self, iv, plain, len, p) != 0) {
        Py_DECREF(result);
        return openssl_error();
    }
    return result;
}

/* The in-place framing of a service-specific APDU from the peer: 1 with *start and *plain
 * set when this object serves it, 0 otherwise. */
static int frame(Gcm *self, const unsigned char *a, Py_ssize_t size, Py_ssize_t *start,
                 int *plain) {
    if (!self->has_peer || size < 7) return 0;
    int pt = self->plain_tags[a[0]];
    if (pt == 0) return 0;
    unsigned char first = a[1];
    Py_ssize_t s, length;
    if (first < 0x80) {
        s = 2; length = first;
    } else if (first == 0x81) {
        s = 3; length = a[2];
    } else if (first == 0x82) {
        s = 4; length = (Py_ssize_t)a[2] << 8 | a[3];
    } else {
        return 0;
    }
    if (length < 5 || length != size - s || a[s] != self->sc_byte) return 0;
    *start = s;
    *plain = pt;
    return 1;
}

static PyObject *unprotect_common(Gcm *self, PyObject *arg, int with_counter) {
    if (!PyBytes_Check(arg)) Py_RETURN_NONE;
    const unsigned char *a = (const unsigned char *)PyBytes_AS_STRING(arg);
    Py_ssize_t size = PyBytes_GET_SIZE(arg), start;
    int plain_tag;
    if (!frame(self, a, size, &start, &plain_tag)) Py_RETURN_NONE;
    unsigned char iv[12];
    memcpy(iv, self->peer, 8);
    memcpy(iv + 8, a + start + 1, 4);
    PyObject *plain = open_payload(self, iv, a + start + 5, size - start - 5, plain_tag);
    if (plain == NULL || !with_counter) return plain;
    unsigned long ic = (unsigned long)iv[8] << 24 | (unsigned long)iv[9] << 16 |
                       (unsigned long)iv[10] << 8 | iv[11];
    PyObject *counter = PyLong_FromUnsignedLong(ic);
    if (counter == NULL) {
        Py_DECREF(plain);
        return NULL;
    }
    PyObject *pair = PyTuple_Pack(2, plain, counter);
    Py_DECREF(plain);
    Py_DECREF(counter);
    return pair;
}

/* unprotect(apdu) -> plaintext, or None (not a framing this object serves) */
static PyObject *Gcm_unprotect(Gcm *self, PyObject *arg) {
    return unprotect_common(self, arg, 0);
}

/* unprotect_counted(apdu) -> (plaintext, invocation counter), or None */
static PyObject *Gcm_unprotect_counted(Gcm *self, PyObject *arg) {
    return unprotect_common(self, arg, 1);
}

/* open(nonce, payload, plain_tag) -> plaintext; plain_tag -1: no service tag to check */
static PyObject *Gcm_open(Gcm *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyBytes_Check(args[0]) || PyBytes_GET_SIZE(args[0]) != 12 ||
        !PyBytes_Check(args[1]) || !PyLong_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "open(nonce: 12 bytes, payload: bytes, plain_tag: int)");
        return NULL;
    }
    int plain_tag = (int)PyLong_AsLong(args[2]);
    if (plain_tag == -1 && PyErr_Occurred()) return NULL;
    return open_payload(self, (const unsigned char *)PyBytes_AS_STRING(args[0]),
                        (const unsigned char *)PyBytes_AS_STRING(args[1]),
                        PyBytes_GET_SIZE(args[1]), plain_tag > 255 ? -1 : plain_tag);
}

static PyObject *Gcm_repr(Gcm *self) {
    char text[40];  /* no secrets */
    snprintf(text, sizeof text, "<_gcm_native.Gcm SC 0x%02X>", self->sc_byte);
    return PyUnicode_FromString(text);
}

static PyMethodDef Gcm_methods[] = {
    {"protect", (PyCFunction)(void (*)(void))Gcm_protect, METH_FASTCALL,
     "protect(plaintext, invocation_counter, head=None) -> APDU or None"},
    {"unprotect", (PyCFunction)Gcm_unprotect, METH_O, "unprotect(apdu) -> plaintext or None"},
    {"unprotect_counted", (PyCFunction)Gcm_unprotect_counted, METH_O,
     "unprotect_counted(apdu) -> (plaintext, invocation counter) or None"},
    {"open", (PyCFunction)(void (*)(void))Gcm_open, METH_FASTCALL,
     "open(nonce, payload, plain_tag) -> plaintext"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject GcmType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "metercert.security._gcm_native.Gcm",
    .tp_basicsize = sizeof(Gcm),
    .tp_dealloc = (destructor)Gcm_dealloc,
    .tp_repr = (reprfunc)Gcm_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "AES-GCM (12-byte tag) with a fixed key and the framing of DLMS service-specific "
              "ciphered APDUs",
    .tp_methods = Gcm_methods,
    .tp_init = (initproc)Gcm_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_gcm_native",
    "OpenSSL AES-GCM for metercert.security.protection.ApduCipher (internal)", -1, NULL,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__gcm_native(void) {
    if (PyType_Ready(&GcmType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&GcmType);
    if (PyModule_AddObject(m, "Gcm", (PyObject *)&GcmType) < 0) {
        Py_DECREF(&GcmType);
        Py_DECREF(m);
        return NULL;
    }
    /* protection.py refuses a helper of another interface version (a stale editable build) */
    if (PyModule_AddIntConstant(m, "ABI_VERSION", 1) < 0 ||
        PyModule_AddStringConstant(m, "OPENSSL_VERSION", OpenSSL_version(OPENSSL_VERSION)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
