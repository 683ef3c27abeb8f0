// Per-document statistics of preprocessing, for a batch of documents in one call (data_tools/preprocess/worker.py):
// the number of non-whitespace characters (--min-doc-chars, --min-cjk-ratio) and the duplicate key, BLAKE2b-64 of
// the text with whitespace runs collapsed to one space and the ends trimmed (data_tools/preprocess/dedup.py).
//
// Both were Python per document (`sum(map(len, text.split()))`, `" ".join(text.split())` + hashlib), a few
// microseconds each, which next to a segmenter's tens of microseconds per document was a measurable share of
// preprocessing.  "Whitespace" is Python's str.isspace(): the set is handed in by the caller, computed from Python
// itself, so the two cannot disagree.  BLAKE2b follows RFC 7693 (unkeyed, 8-byte digest); tests compare every key
// with hashlib's.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace py = pybind11;

namespace {

class Blake2b64 {
   public:
    Blake2b64() {
        for (int i = 0; i < 8; ++i) h_[i] = kIV[i];
        h_[0] ^= 0x01010000ULL ^ 8ULL;  // depth 1, fanout 1, no key, 8-byte digest
    }

    void update(const uint8_t* p, size_t n) {
        while (n > 0) {
            if (fill_ == 128) {  // a full block with more input after it: not the last one
                t_ += 128;
                compress(false);
                fill_ = 0;
            }
            const size_t k = std::min(n, 128 - fill_);
            std::memcpy(buf_ + fill_, p, k);
            fill_ += k;
            p += k;
            n -= k;
        }
    }

    uint64_t digest() {
        t_ += fill_;
        std::memset(buf_ + fill_, 0, 128 - fill_);
        compress(true);
        return h_[0];  // the first 8 bytes of the digest, little-endian, as int.from_bytes(..., "little")
    }

   private:
    static constexpr uint64_t kIV[8] = {0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL,
                                        0xa54ff53a5f1d36f1ULL, 0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL,
                                        0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};
    static constexpr uint8_t kSigma[12][16] = {
        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
        {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4}, {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
        {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13}, {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
        {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11}, {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
        {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5}, {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3}};

    static uint64_t rotr(uint64_t x, int n) { return (x >> n) | (x << (64 - n)); }

    static void mix(uint64_t* v, int a, int b, int c, int d, uint64_t x, uint64_t y) {
        v[a] = v[a] + v[b] + x;
        v[d] = rotr(v[d] ^ v[a], 32);
        v[c] = v[c] + v[d];
        v[b] = rotr(v[b] ^ v[c], 24);
        v[a] = v[a] + v[b] + y;
        v[d] = rotr(v[d] ^ v[a], 16);
        v[c] = v[c] + v[d];
        v[b] = rotr(v[b] ^ v[c], 63);
    }

    void compress(bool last) {
        uint64_t m[16], v[16];
        static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "BLAKE2b reads its words little-endian");
        std::memcpy(m, buf_, sizeof m);
        for (int i = 0; i < 8; ++i) {
            v[i] = h_[i];
            v[i + 8] = kIV[i];
        }
        v[12] ^= t_;  // the byte counter's high word stays 0: a document is far below 2^64 bytes
        if (last) v[14] = ~v[14];
        for (const auto& s : kSigma) {
            mix(v, 0, 4, 8, 12, m[s[0]], m[s[1]]);
            mix(v, 1, 5, 9, 13, m[s[2]], m[s[3]]);
            mix(v, 2, 6, 10, 14, m[s[4]], m[s[5]]);
            mix(v, 3, 7, 11, 15, m[s[6]], m[s[7]]);
            mix(v, 0, 5, 10, 15, m[s[8]], m[s[9]]);
            mix(v, 1, 6, 11, 12, m[s[10]], m[s[11]]);
            mix(v, 2, 7, 8, 13, m[s[12]], m[s[13]]);
            mix(v, 3, 4, 9, 14, m[s[14]], m[s[15]]);
        }
        for (int i = 0; i < 8; ++i) h_[i] ^= v[i] ^ v[i + 8];
    }

    uint64_t h_[8];
    uint8_t buf_[128];
    size_t fill_ = 0;
    uint64_t t_ = 0;
};

// UTF-8 of one code point; surrogates are written as their 3-byte form ("surrogatepass", as dedup.normalised).
inline size_t utf8(uint32_t c, uint8_t* out) {
    if (c < 0x80) {
        out[0] = static_cast<uint8_t>(c);
        return 1;
    }
    if (c < 0x800) {
        out[0] = static_cast<uint8_t>(0xC0 | (c >> 6));
        out[1] = static_cast<uint8_t>(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = static_cast<uint8_t>(0xE0 | (c >> 12));
        out[1] = static_cast<uint8_t>(0x80 | ((c >> 6) & 0x3F));
        out[2] = static_cast<uint8_t>(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = static_cast<uint8_t>(0xF0 | (c >> 18));
    out[1] = static_cast<uint8_t>(0x80 | ((c >> 12) & 0x3F));
    out[2] = static_cast<uint8_t>(0x80 | ((c >> 6) & 0x3F));
    out[3] = static_cast<uint8_t>(0x80 | (c & 0x3F));
    return 4;
}

class DocStats {
   public:
    explicit DocStats(const std::vector<uint32_t>& whitespace) {
        for (uint32_t c : whitespace) {
            if (c < 0x10000) space_[c] = 1;
            else throw std::invalid_argument("whitespace beyond the BMP: the table assumes none");
        }
    }

    // (non-whitespace characters, key) of each str of `texts`, as two arrays.
    py::tuple run(const py::list& texts) const {
        const auto n = static_cast<py::ssize_t>(texts.size());
        py::array_t<int64_t> chars(n);
        py::array_t<uint64_t> keys(n);
        auto* pc = chars.mutable_data();
        auto* pk = keys.mutable_data();
        for (py::ssize_t k = 0; k < n; ++k) {
            PyObject* s = PyList_GET_ITEM(texts.ptr(), k);
            if (!PyUnicode_Check(s)) throw py::type_error("doc_stats: texts must be str");
            const int kind = PyUnicode_KIND(s);
            const void* data = PyUnicode_DATA(s);
            const Py_ssize_t len = PyUnicode_GET_LENGTH(s);
            if (kind == PyUnicode_1BYTE_KIND) one(static_cast<const Py_UCS1*>(data), len, pc[k], pk[k]);
            else if (kind == PyUnicode_2BYTE_KIND) one(static_cast<const Py_UCS2*>(data), len, pc[k], pk[k]);
            else one(static_cast<const Py_UCS4*>(data), len, pc[k], pk[k]);
        }
        return py::make_tuple(chars, keys);
    }

   private:
    bool is_space(uint32_t c) const { return c < 0x10000 && space_[c] != 0; }

    // The normalised UTF-8 goes to a buffer, hashed in one call (per-character updates cost twice as much).
    template <typename Ch>
    void one(const Ch* s, Py_ssize_t len, int64_t& n_chars, uint64_t& key) const {
        buf_.resize(4 * static_cast<size_t>(len));
        uint8_t* out = buf_.data();
        int64_t count = 0;
        bool pending_space = false;  // a whitespace run after some text: one ' ' if more text follows
        for (Py_ssize_t i = 0; i < len; ++i) {
            const uint32_t c = s[i];
            if (is_space(c)) {
                pending_space = count > 0;
                continue;
            }
            if (pending_space) {
                *out++ = ' ';
                pending_space = false;
            }
            ++count;
            out += utf8(c, out);
        }
        Blake2b64 h;
        h.update(buf_.data(), static_cast<size_t>(out - buf_.data()));
        n_chars = count;
        key = h.digest();
    }

    std::vector<uint8_t> space_ = std::vector<uint8_t>(0x10000, 0);
    mutable std::vector<uint8_t> buf_;
};

}  // namespace

PYBIND11_MODULE(_doc_stats, m) {
    m.doc() = "Per-document statistics of preprocessing (see data_tools/preprocess/dedup.py)";
    py::class_<DocStats>(m, "DocStats")
        .def(py::init<const std::vector<uint32_t>&>(), py::arg("whitespace"))
        .def("run", &DocStats::run, py::arg("texts"),
             "(non-whitespace characters int64[n], BLAKE2b-64 keys uint64[n]) of a list of str");
}
