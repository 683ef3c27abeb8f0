// BERT BasicTokenizer + WordPiece on UTF-8, and the document encoder (sentence
// splitting, whole-word flags) used by data_tools.preprocess.  The word-level
// mode (`encode_words`, `encode_document_words`: data_tools/word_tokenizer.py)
// takes a segmenter's words: a word that is a vocab token is that one token,
// any other goes through the BERT pipeline on its own (RoFormerTokenizer);
// `encode_text`, `encode_document_text` cut the words here (jieba_dag.h).
//
// Unicode properties come from Python (data_tools/tokenizer.py builds them from
// `unicodedata` once per process): one flag byte per code point plus the
// replacement text of every code point whose lowercase/NFD/accent-stripped form
// differs from itself.  Words containing a "complex" code point (combining
// marks, conjoining jamo: anything whose result depends on its neighbours under
// NFC/NFD) are handed back to a Python callback that runs the reference
// algorithm, so the fast path never has to approximate.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "jieba_dag.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <memory>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace py = pybind11;

namespace {

constexpr uint32_t kNumCodePoints = 0x110000;
constexpr uint32_t kDirectTable = 0x30000;  // covers every BERT CJK range
constexpr int kMaxWordChars = 100;           // BERT's max_input_chars_per_word

enum Flag : uint8_t {
    kRemove = 1,      // NUL, U+FFFD, Unicode category C* except \t \n \r
    kSpace = 2,       // \t \n \r space and Zs
    kPunct = 4,       // split point (BERT punctuation; + symbols for PaddleNLP)
    kCjk = 8,         // BERT CJK ranges: own token
    kComplex = 16,    // word goes to the Python reference path
    kMapped = 32,     // replaced by its mapping text
    kSentence = 64,   // a newline, sentence terminal or closer (set by the C++ side, not the Python tables)
};

bool is_terminal(uint32_t c) {
    // 。！？!?；…
    return c == 0x3002 || c == 0xFF01 || c == 0xFF1F || c == 0x21 || c == 0x3F || c == 0xFF1B ||
           c == 0x2026;
}

bool is_closer(uint32_t c) {
    // ” ’ 」 』 ） ) 】 》 " ' 〕 〉 ］ ] ｝ }
    return c == 0x201D || c == 0x2019 || c == 0x300D || c == 0x300F || c == 0xFF09 || c == 0x29 ||
           c == 0x3011 || c == 0x300B || c == 0x22 || c == 0x27 || c == 0x3015 || c == 0x3009 ||
           c == 0xFF3D || c == 0x5D || c == 0xFF5D || c == 0x7D;
}

bool is_clause(uint32_t c) {
    // ，、：;, (plus the full-width colon/comma variants)
    return c == 0xFF0C || c == 0x3001 || c == 0xFF1A || c == 0x3B || c == 0x2C || c == 0x3A;
}

bool is_newline(uint32_t c) {
    return c == 0x0A || c == 0x0D || c == 0x2028 || c == 0x2029 || c == 0x85;
}

// Decodes one code point at s[i]; invalid bytes decode to U+FFFD (removed later).
inline uint32_t decode_utf8(const unsigned char* s, size_t n, size_t& i) {
    unsigned char b = s[i];
    if (b < 0x80) {
        ++i;
        return b;
    }
    int len;
    uint32_t cp;
    if ((b & 0xE0) == 0xC0) {
        len = 2;
        cp = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
        len = 3;
        cp = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
        len = 4;
        cp = b & 0x07;
    } else {
        ++i;
        return 0xFFFD;
    }
    if (i + len > n) {
        ++i;
        return 0xFFFD;
    }
    for (int k = 1; k < len; ++k) {
        unsigned char c = s[i + k];
        if ((c & 0xC0) != 0x80) {
            ++i;
            return 0xFFFD;
        }
        cp = (cp << 6) | (c & 0x3F);
    }
    i += len;
    return cp < kNumCodePoints ? cp : 0xFFFD;
}

inline void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

// The key of a word (its code points c_0..c_{n-1}) in the word table.  A word of at most three characters is
// packed exactly, 21 bits per character as c+1 (0 marks "no character"), so its key is the word itself and a
// matching key needs no comparison; a longer word's key is a 64-bit hash of its characters with the top bit set,
// confirmed against the token's characters.
constexpr uint64_t kLongKey = 1ull << 63;

inline uint64_t short_key(const uint32_t* c, size_t n) {
    uint64_t k = 0;
    for (size_t j = 0; j < n; ++j) k |= static_cast<uint64_t>(c[j] + 1) << (21 * j);
    return k;
}

inline uint64_t long_key(const uint32_t* c, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull;
    for (size_t j = 0; j < n; ++j) h = (h ^ c[j]) * 0xbf58476d1ce4e5b9ull;
    return (h ^ (h >> 31)) | kLongKey;
}

// short_key for 1 <= n <= 3 without a loop: reads c[0..2] (the caller's buffer has two spare slots) and masks
// the characters past n off.
inline uint64_t short_key3(const uint32_t* c, Py_ssize_t n) {
    const uint64_t k = static_cast<uint64_t>(c[0] + 1) | static_cast<uint64_t>(c[1] + 1) << 21 |
                       static_cast<uint64_t>(c[2] + 1) << 42;
    return k & ((1ull << (21 * n)) - 1);
}

inline uint64_t word_key(const uint32_t* c, size_t n) { return n <= 3 ? short_key(c, n) : long_key(c, n); }


struct Token {
    int32_t id;
    int32_t offset;  // code-point offset in the original text of the piece's first char
    int32_t end;     // one past the code-point offset of the piece's last char
    bool continuation;
    bool clause;  // a single clause-punctuation char (preferred cut point)
};

class Tokenizer {
public:
    Tokenizer(const std::vector<std::string>& vocab, int32_t unk_id, py::array_t<uint8_t> flags,
              const std::vector<uint32_t>& map_cps, const std::vector<std::string>& map_texts,
              py::function fallback)
        : tokens_(vocab), unk_id_(unk_id), fallback_(std::move(fallback)) {
        auto f = flags.unchecked<1>();
        if (f.shape(0) != kNumCodePoints) throw std::invalid_argument("flags must have 0x110000 entries");
        if (map_cps.size() != map_texts.size()) throw std::invalid_argument("map_cps/map_texts differ in length");
        if (unk_id < 0 || static_cast<size_t>(unk_id) >= vocab.size()) throw std::invalid_argument("unk_id out of range");
        flags_.assign(f.data(0), f.data(0) + kNumCodePoints);
        for (uint32_t c = 0; c < 0x10000; ++c)
            if (is_newline(c) || is_terminal(c) || is_closer(c)) flags_[c] |= kSentence;
        for (size_t k = 0; k < map_cps.size(); ++k) {
            std::vector<uint32_t> cps;
            const auto* s = reinterpret_cast<const unsigned char*>(map_texts[k].data());
            size_t i = 0;
            while (i < map_texts[k].size()) cps.push_back(decode_utf8(s, map_texts[k].size(), i));
            mapping_.emplace(map_cps[k], std::move(cps));
        }
        // string_views point into tokens_, which is never resized after this.
        index_.reserve(tokens_.size() * 2);
        first_id_.assign(kDirectTable, -1);
        cont_id_.assign(kDirectTable, -1);
        for (size_t id = 0; id < tokens_.size(); ++id) {
            const std::string& t = tokens_[id];
            index_[std::string_view(t)] = static_cast<int32_t>(id);  // last occurrence wins, as in transformers
            if (t.size() > max_token_bytes_) max_token_bytes_ = t.size();
            bool cont = t.size() > 2 && t[0] == '#' && t[1] == '#';
            std::string_view body = cont ? std::string_view(t).substr(2) : std::string_view(t);
            size_t i = 0;
            const auto* s = reinterpret_cast<const unsigned char*>(body.data());
            uint32_t cp = decode_utf8(s, body.size(), i);
            if (i == body.size() && !body.empty() && cp < kDirectTable) {
                (cont ? cont_id_[cp] : first_id_[cp]) = static_cast<int32_t>(id);
            }
        }
        // The word table of the word-level mode: open addressing on WordKey, power-of-two size, at most half full,
        // 16-byte slots.  A lookup touches one slot in the common case (a word of up to three characters needs no
        // comparison beyond the key); longer tokens' characters are kept in token_cps_ for the confirmation.
        size_t cap = 16;
        while (cap < 2 * tokens_.size()) cap <<= 1;
        word_mask_ = cap - 1;
        word_shift_ = 64;
        for (size_t c = cap; c > 1; c >>= 1) --word_shift_;
        word_slots_.assign(cap, WordSlot{});
        token_cp_start_.assign(tokens_.size() + 1, 0);
        for (size_t id = 0; id < tokens_.size(); ++id) {
            const std::string& t = tokens_[id];
            const auto* s = reinterpret_cast<const unsigned char*>(t.data());
            const size_t first = token_cps_.size();
            size_t i = 0;
            while (i < t.size()) token_cps_.push_back(decode_utf8(s, t.size(), i));
            const size_t n = token_cps_.size() - first;
            const uint64_t k = word_key(token_cps_.data() + first, n);
            if (n <= 3) token_cps_.resize(first);  // the key is the token
            token_cp_start_[id + 1] = static_cast<uint32_t>(token_cps_.size());
            if (n == 0) continue;
            size_t slot = slot_of(k);
            while (word_slots_[slot].id >= 0 &&
                   !(word_slots_[slot].key == k && same_token(word_slots_[slot].id, token_cps_.data() + first, n)))
                slot = (slot + 1) & word_mask_;
            word_slots_[slot].key = k;
            word_slots_[slot].id = static_cast<int32_t>(id);  // last occurrence wins, as in transformers
        }
    }

    // Tokens of `text` (UTF-8), no [CLS]/[SEP].
    py::array_t<int32_t> encode(py::bytes text) {
        std::string_view sv = view(text);
        std::vector<int32_t> ids;
        ids.reserve(sv.size() / 2 + 8);
        run(sv, [&](const Token& t) { ids.push_back(t.id); }, nullptr);
        py::array_t<int32_t> out(static_cast<py::ssize_t>(ids.size()));
        std::copy(ids.begin(), ids.end(), out.mutable_data());
        return out;
    }

    // Tokens of `text` with the code-point span [start, end) of the original text each one comes from
    // (what extractive QA and NER map predictions back through).  Exact except for the inner pieces of a word
    // that the Python reference path handled without a per-character result (conjoining jamo), which share
    // that word's span proportionally.
    py::tuple encode_offsets(py::bytes text) {
        std::string_view sv = view(text);
        std::vector<int32_t> ids, starts, ends;
        run(sv, [&](const Token& t) {
            ids.push_back(t.id);
            starts.push_back(t.offset);
            ends.push_back(t.end);
        }, nullptr);
        return py::make_tuple(to_array(ids), to_array(starts), to_array(ends));
    }

    // The document encoder: ids, word-start flags, sentence lengths, counts.
    py::tuple encode_document(py::bytes text, py::object word_starts_obj, int64_t max_sentence_tokens) {
        if (max_sentence_tokens < 1) throw std::invalid_argument("max_sentence_tokens must be >= 1");
        std::string_view sv = view(text);
        const int32_t* ws = nullptr;
        size_t n_ws = 0;
        py::array_t<int32_t, py::array::c_style | py::array::forcecast> ws_arr;
        std::vector<int32_t> ws_from_words;
        int64_t words_total = -1;
        if (PyList_Check(word_starts_obj.ptr())) {
            // A segmenter's word list: starts are the running sums of the word lengths (code points).
            PyObject* lst = word_starts_obj.ptr();
            const Py_ssize_t nw = PyList_GET_SIZE(lst);
            ws_from_words.reserve(static_cast<size_t>(nw));
            int64_t pos = 0;
            for (Py_ssize_t k = 0; k < nw; ++k) {
                PyObject* w = PyList_GET_ITEM(lst, k);
                if (!PyUnicode_Check(w)) throw std::invalid_argument("word list must hold str");
                const Py_ssize_t len = PyUnicode_GET_LENGTH(w);
                if (len > 0) ws_from_words.push_back(static_cast<int32_t>(pos));
                pos += len;
            }
            words_total = pos;
            ws = ws_from_words.data();
            n_ws = ws_from_words.size();
        } else if (!word_starts_obj.is_none()) {
            ws_arr = py::array_t<int32_t, py::array::c_style | py::array::forcecast>::ensure(word_starts_obj);
            if (!ws_arr || ws_arr.ndim() != 1) throw std::invalid_argument("word_starts must be a 1-D int array");
            ws = ws_arr.data();
            n_ws = static_cast<size_t>(ws_arr.shape(0));
        }
        std::vector<int32_t> ids;
        std::vector<uint8_t> wwm, clause;
        std::vector<int64_t> sent_starts;
        ids.reserve(sv.size() / 2 + 8);
        wwm.reserve(sv.size() / 2 + 8);
        clause.reserve(sv.size() / 2 + 8);
        std::vector<int32_t> breaks;
        size_t bi = 0, wi = 0;
        Counts counts;
        run(
            sv,
            [&](const Token& t) {
                bool cut = ids.empty();
                while (bi < breaks.size() && t.offset >= breaks[bi]) {
                    cut = true;
                    ++bi;
                }
                if (cut) sent_starts.push_back(static_cast<int64_t>(ids.size()));
                uint8_t start = 0;
                if (!t.continuation) {
                    if (ws == nullptr) {
                        start = 1;
                    } else {
                        while (wi < n_ws && ws[wi] < t.offset) ++wi;
                        start = (wi < n_ws && ws[wi] == t.offset) ? 1 : 0;
                    }
                }
                ids.push_back(t.id);
                wwm.push_back(start);
                clause.push_back(t.clause ? 1 : 0);
            },
            &breaks, &counts);
        if (words_total >= 0 && words_total != counts.chars)
            throw std::runtime_error("segmenter words cover " + std::to_string(words_total) + " of " +
                                     std::to_string(counts.chars) + " characters");
        if (ws != nullptr) {
            for (size_t k = 1; k < n_ws; ++k)
                if (ws[k] <= ws[k - 1]) throw std::invalid_argument("word_starts must be strictly increasing");
        }
        return py::make_tuple(to_array(ids), to_array(wwm),
                              to_array(sentence_lengths(sent_starts, ids.size(), wwm, clause, max_sentence_tokens)),
                              counts.cjk, counts.chars);
    }

    // Word-level tokens of `text` (str) given `words` (a list of str, the segmenter's words, which must cover the
    // text exactly): a word that is a vocab token is that token, any other is tokenized on its own as `encode`
    // does.  With offsets: (ids, starts, ends) as encode_offsets; else the ids alone.
    py::object encode_words(py::str text, py::list words, bool with_offsets) {
        return words_with([&](auto emit) { run_words(PyUnicode_GET_LENGTH(text.ptr()), words.ptr(), emit); },
                          PyUnicode_GET_LENGTH(text.ptr()), with_offsets);
    }

    // encode_words with the words of the segmenter (set_segmenter) cut from `text` here: no word list.
    py::object encode_text(py::str text, bool with_offsets) {
        return words_with([&](auto emit) { run_text(text.ptr(), emit); }, PyUnicode_GET_LENGTH(text.ptr()),
                          with_offsets);
    }

    // The segmenter encode_text and encode_document_text cut with (a data_tools._text_core.JiebaDag).
    void set_segmenter(std::shared_ptr<jieba_dag::Segmenter> seg) { seg_ = std::move(seg); }

    // The document encoder of the word-level mode: as encode_document, with the tokens of encode_words and a
    // word-start flag on the first token of every word (so a word that fell back to pieces is masked whole).
    py::tuple encode_document_words(py::str text, py::list words, int64_t max_sentence_tokens) {
        return document_with([&](auto emit, Scan* scan) {
            run_words(PyUnicode_GET_LENGTH(text.ptr()), words.ptr(), emit, scan);
        }, max_sentence_tokens);
    }

    // encode_document_words with the segmenter's words (set_segmenter), cut from `text` here: one call per
    // document, no Python object per word.
    py::tuple encode_document_text(py::str text, int64_t max_sentence_tokens) {
        return document_with([&](auto emit, Scan* scan) { run_text(text.ptr(), emit, scan); }, max_sentence_tokens);
    }

    // encode_document_text of every str of `texts`, concatenated in order (data_tools.tokenizer.EncodedBatch's
    // fields): one call for a batch of documents, so preprocess makes no Python object per document.
    py::tuple encode_documents_text(py::list texts, int64_t max_sentence_tokens) {
        if (max_sentence_tokens < 1) throw std::invalid_argument("max_sentence_tokens must be >= 1");
        std::vector<int32_t> ids, lens;
        std::vector<uint8_t> wwm;
        const Py_ssize_t n = PyList_GET_SIZE(texts.ptr());
        std::vector<int64_t> doc_sentences, doc_tokens, cjk;
        doc_sentences.reserve(static_cast<size_t>(n));
        doc_tokens.reserve(static_cast<size_t>(n));
        cjk.reserve(static_cast<size_t>(n));
        for (Py_ssize_t k = 0; k < n; ++k) {
            PyObject* text = PyList_GET_ITEM(texts.ptr(), k);
            if (!PyUnicode_Check(text)) throw py::type_error("encode_documents_text: texts must be str");
            const std::vector<int32_t> doc_lens =
                document_into([&](auto emit, Scan* scan) { run_text(text, emit, scan); }, max_sentence_tokens);
            ids.insert(ids.end(), doc_ids_.begin(), doc_ids_.end());
            wwm.insert(wwm.end(), doc_wwm_.begin(), doc_wwm_.end());
            lens.insert(lens.end(), doc_lens.begin(), doc_lens.end());
            doc_sentences.push_back(static_cast<int64_t>(doc_lens.size()));
            doc_tokens.push_back(static_cast<int64_t>(doc_ids_.size()));
            cjk.push_back(scan_.counts.cjk);
        }
        return py::make_tuple(new_array(ids), new_array(wwm), new_array(lens), new_array(doc_sentences),
                              new_array(doc_tokens), new_array(cjk));
    }

    size_t vocab_size() const { return tokens_.size(); }

private:
    // encode_words / encode_text: `fill(emit)` walks the words.
    template <typename Fill>
    py::object words_with(Fill fill, Py_ssize_t n_chars, bool with_offsets) {
        std::vector<int32_t> ids, starts, ends;
        ids.reserve(static_cast<size_t>(n_chars) + 8);
        fill([&](const Token& t, bool) {
            ids.push_back(t.id);
            if (with_offsets) {
                starts.push_back(t.offset);
                ends.push_back(t.end);
            }
        });
        if (!with_offsets) return to_array(ids);
        return py::make_tuple(to_array(ids), to_array(starts), to_array(ends));
    }

    // encode_document_words / encode_document_text: `fill(emit, scan)` walks the words.
    template <typename Fill>
    py::tuple document_with(Fill fill, int64_t max_sentence_tokens) {
        if (max_sentence_tokens < 1) throw std::invalid_argument("max_sentence_tokens must be >= 1");
        const std::vector<int32_t> lens = document_into(fill, max_sentence_tokens);
        return py::make_tuple(new_array(doc_ids_), new_array(doc_wwm_), new_array(lens), scan_.counts.cjk,
                              scan_.counts.chars);
    }

    // One document's tokens into doc_ids_ / doc_wwm_ and its counts into scan_.counts; its sentence lengths returned.
    template <typename Fill>
    std::vector<int32_t> document_into(Fill fill, int64_t max_sentence_tokens) {
        Scan& scan = scan_;
        scan.breaks.clear();
        scan.counts = Counts{};
        scan.after_terminal = false;
        std::vector<int32_t>& ids = doc_ids_;
        std::vector<uint8_t>&wwm = doc_wwm_, &clause = doc_clause_;
        std::vector<int64_t>& sent_starts = doc_sent_starts_;
        ids.clear();
        wwm.clear();
        clause.clear();
        sent_starts.clear();
        const std::vector<int32_t>& breaks = scan.breaks;  // all found before the first token is emitted
        size_t bi = 0;
        fill([&](const Token& t, bool word_start) {
            bool cut = ids.empty();
            while (bi < breaks.size() && t.offset >= breaks[bi]) {
                cut = true;
                ++bi;
            }
            if (cut) sent_starts.push_back(static_cast<int64_t>(ids.size()));
            ids.push_back(t.id);
            wwm.push_back(word_start ? 1 : 0);
            clause.push_back(t.clause ? 1 : 0);
        }, &scan);
        return sentence_lengths(sent_starts, ids.size(), wwm, clause, max_sentence_tokens);
    }

    struct Counts {
        int64_t cjk = 0;
        int64_t chars = 0;
    };

    // Sentence lengths from the sentence start positions (token indices), long sentences cut after clause
    // punctuation, else before a word start, else at the limit.
    static std::vector<int32_t> sentence_lengths(std::vector<int64_t>& sent_starts, size_t n_tokens,
                                                 const std::vector<uint8_t>& wwm, const std::vector<uint8_t>& clause,
                                                 int64_t m) {
        std::vector<int32_t> lengths;
        sent_starts.push_back(static_cast<int64_t>(n_tokens));
        for (size_t s = 0; s + 1 < sent_starts.size(); ++s) {
            int64_t a = sent_starts[s], b = sent_starts[s + 1];
            while (b - a > m) {
                int64_t cut = -1;
                for (int64_t j = a + m; j > a; --j)  // cut after clause punctuation at j-1
                    if (clause[j - 1]) { cut = j; break; }
                if (cut < 0)
                    for (int64_t j = a + m; j > a; --j)  // cut before a word start
                        if (wwm[j]) { cut = j; break; }
                if (cut < 0) cut = a + m;
                lengths.push_back(static_cast<int32_t>(cut - a));
                a = cut;
            }
            if (b > a) lengths.push_back(static_cast<int32_t>(b - a));
        }
        return lengths;
    }

    // Sentence breaks (code-point offsets) and counts, found as run() finds them while tokenizing.
    struct Scan {
        std::vector<int32_t> breaks;
        Counts counts;
        bool after_terminal = false;
    };

    // Copies one word's characters to `cps` and does run()'s per-character work on them: sentence breaks (with
    // `scan`) and the CJK count.  Returns whether every character is a plain CJK one (flag kCjk alone).
    template <typename Char>
    bool read_chars(const Char* data, Py_ssize_t len, uint32_t* cps, int64_t off, Scan* scan, bool& after_terminal,
                    int64_t& cjk) const {
        const uint8_t* flags = flags_.data();
        bool plain_cjk = true;
        for (Py_ssize_t j = 0; j < len; ++j) {
            uint32_t c = data[j];
            if (sizeof(Char) == 4 && c >= kNumCodePoints) c = 0xFFFD;
            cps[j] = c;
            const uint8_t f = flags[c];
            plain_cjk = plain_cjk && f == kCjk && c < kDirectTable;
            if (scan == nullptr || (f & kRemove)) continue;
            cjk += (f & kCjk) ? 1 : 0;
            if (!(f & kSentence)) {  // the common case: one test
                if (after_terminal) {
                    scan->breaks.push_back(static_cast<int32_t>(off + j));
                    after_terminal = false;
                }
            } else {
                if (is_newline(c)) {
                    scan->breaks.push_back(static_cast<int32_t>(off + j));
                    after_terminal = false;
                } else if (after_terminal && !is_terminal(c) && !is_closer(c)) {
                    scan->breaks.push_back(static_cast<int32_t>(off + j));
                    after_terminal = false;
                }
                if (is_terminal(c)) after_terminal = true;
            }
        }
        return plain_cjk;
    }

    // One word of the document being walked: its span (code points; its characters are doc_cps_[off, off+len)),
    // its key in the word table and whether it is all plain CJK characters.
    struct WordRec {
        uint64_t key;
        int32_t off, len;
        bool plain_cjk;
    };

    // Walks `words` (str objects whose lengths must add up to `n_chars`, the text's) and emits each word's tokens
    // with `emit(token, is_the_word's_first_token)`: one token when the word is in the vocab, else the BERT
    // pipeline's.  With `scan`, also finds the sentence breaks and counts on the way.  Two passes: the first reads
    // every word's characters (flags, sentence breaks, key) and prefetches its table slot, the second looks the
    // words up and emits; so the table's cache misses (rjieba's dictionary evicts it between documents) overlap
    // instead of stalling word after word.
    template <typename Emit>
    void run_words(Py_ssize_t n_chars, PyObject* words, Emit emit, Scan* scan = nullptr) {
        const Py_ssize_t nw = PyList_GET_SIZE(words);
        std::vector<WordRec>& recs = word_recs_;
        // Filled by index, not push_back: both sizes are known (every word a record, every character a slot), and
        // a record built on the stack and copied in costs a store-forwarding stall per word.
        if (recs.size() < static_cast<size_t>(nw)) recs.resize(static_cast<size_t>(nw));
        if (doc_cps_.size() < static_cast<size_t>(n_chars) + 2) doc_cps_.resize(static_cast<size_t>(n_chars) + 2);
        WordRec* rec = recs.data();
        uint32_t* cps_out = doc_cps_.data();
        bool after_terminal = scan != nullptr && scan->after_terminal;
        int64_t cjk = 0;
        int64_t off = 0;
        for (Py_ssize_t k = 0; k < nw; ++k) {
            PyObject* w = PyList_GET_ITEM(words, k);
            if (!PyUnicode_Check(w)) throw std::invalid_argument("word list must hold str");
            const Py_ssize_t len = PyUnicode_GET_LENGTH(w);
            if (len == 0) continue;
            if (off + len > n_chars)
                throw std::runtime_error("segmenter words cover more than the text's " + std::to_string(n_chars) +
                                         " characters");
            uint32_t* cps = cps_out + off;
            const void* data = PyUnicode_DATA(w);
            bool plain_cjk;  // every character a CJK one that maps to itself: its own token, or [UNK]
            switch (PyUnicode_KIND(w)) {  // one loop per character width, no per-character switch
                case PyUnicode_1BYTE_KIND:
                    plain_cjk = read_chars(static_cast<const Py_UCS1*>(data), len, cps, off, scan, after_terminal, cjk);
                    break;
                case PyUnicode_2BYTE_KIND:
                    plain_cjk = read_chars(static_cast<const Py_UCS2*>(data), len, cps, off, scan, after_terminal, cjk);
                    break;
                default:
                    plain_cjk = read_chars(static_cast<const Py_UCS4*>(data), len, cps, off, scan, after_terminal, cjk);
            }
            add_word(rec++, cps, off, len, plain_cjk);
            off += len;
        }
        if (scan != nullptr) {
            scan->after_terminal = after_terminal;
            scan->counts.cjk = cjk;
        }
        if (off != n_chars)
            throw std::runtime_error("segmenter words cover " + std::to_string(off) + " of " +
                                     std::to_string(n_chars) + " characters");
        if (scan != nullptr) scan->counts.chars = off;
        emit_words(rec, emit);
    }

    // The words of `text` (a str) as the segmenter cuts them, through run_words's two passes.
    template <typename Emit>
    void run_text(PyObject* text, Emit emit, Scan* scan = nullptr) {
        if (!seg_) throw std::runtime_error("no segmenter: call Tokenizer.set_segmenter first");
        const Py_ssize_t n = PyUnicode_GET_LENGTH(text);
        if (n > INT32_MAX) throw std::invalid_argument("text longer than 2^31 characters");
        if (doc_cps_.size() < static_cast<size_t>(n) + 2) doc_cps_.resize(static_cast<size_t>(n) + 2);
        uint32_t* cps = doc_cps_.data();
        jieba_dag::copy_str(text, cps);
        seg_ends_.clear();
        seg_->cut(cps, static_cast<size_t>(n), seg_ends_, seg_scratch_);
        if (word_recs_.size() < seg_ends_.size()) word_recs_.resize(seg_ends_.size());
        WordRec* rec = word_recs_.data();
        bool after_terminal = scan != nullptr && scan->after_terminal;
        int64_t cjk = 0;
        int32_t off = 0;
        for (const int32_t end : seg_ends_) {
            const Py_ssize_t len = end - off;
            uint32_t* w = cps + off;
            add_word(rec++, w, off, len, read_chars(w, len, w, off, scan, after_terminal, cjk));  // in place
            off = end;
        }
        if (scan != nullptr) {
            scan->after_terminal = after_terminal;
            scan->counts.cjk = cjk;
            scan->counts.chars = n;
        }
        emit_words(rec, emit);
    }

    // The record of one word (characters cps[0, len), at `off` of the document), its table slot prefetched.
    void add_word(WordRec* rec, const uint32_t* cps, int64_t off, Py_ssize_t len, bool plain_cjk) {
        // every word through the table (one-character tokens are in it too): no branch on the word's length
        // in the common case, which a mix of one- and two-character words would mispredict half the time
        const uint64_t key = len <= 3 ? short_key3(cps, len) : long_key(cps, static_cast<size_t>(len));
        __builtin_prefetch(&word_slots_[slot_of(key)]);
        rec->key = key;
        rec->off = static_cast<int32_t>(off);
        rec->len = static_cast<int32_t>(len);
        rec->plain_cjk = plain_cjk;
    }

    // The second pass of run_words / run_text: the tokens of the records word_recs_[0, end).
    template <typename Emit>
    void emit_words(const WordRec* end, Emit& emit) {
        const uint32_t* cps_out = doc_cps_.data();
        for (const WordRec* r_ = word_recs_.data(); r_ != end; ++r_) {
            const WordRec& r = *r_;
            const uint32_t* cps = cps_out + r.off;
            const int32_t id = find_word(r.key, cps, static_cast<size_t>(r.len));
            if (id >= 0) {
                emit(Token{id, r.off, r.off + r.len, false, r.len == 1 && is_clause(cps[0])}, true);
            } else if (r.plain_cjk) {  // what run() would do, without its per-word setup (the common case)
                for (int32_t j = 0; j < r.len; ++j) {
                    const int32_t cid = first_id_[cps[j]];
                    emit(Token{cid < 0 ? unk_id_ : cid, r.off + j, r.off + j + 1, false, false}, j == 0);
                }
            } else {
                word_utf8_.clear();
                for (int32_t j = 0; j < r.len; ++j) append_utf8(word_utf8_, cps[j]);
                bool first_token = true;
                run(word_utf8_, [&](const Token& t) {
                    emit(t, first_token);
                    first_token = false;
                }, nullptr, nullptr, r.off);
            }
        }
    }

    static std::string_view view(const py::bytes& b) {
        char* data = nullptr;
        Py_ssize_t len = 0;
        if (PyBytes_AsStringAndSize(b.ptr(), &data, &len) != 0) throw py::error_already_set();
        return std::string_view(data, static_cast<size_t>(len));
    }

    // A 1-D array copied from `v` through numpy's C API directly: py::array_t's constructor (dtype lookup, shape
    // and stride vectors) costs a few percent of the word-level document encoder, which makes three per document.
    template <typename T>
    static py::object new_array(const std::vector<T>& v) {
        static PyObject* const descr = py::dtype::of<T>().release().ptr();  // one reference kept for the process
        auto& api = py::detail::npy_api::get();
        Py_intptr_t n = static_cast<Py_intptr_t>(v.size());
        Py_INCREF(descr);  // PyArray_NewFromDescr steals it
        PyObject* a = api.PyArray_NewFromDescr_(api.PyArray_Type_, descr, 1, &n, nullptr, nullptr, 0, nullptr);
        if (a == nullptr) throw py::error_already_set();
        if (n > 0) std::memcpy(py::detail::array_proxy(a)->data, v.data(), v.size() * sizeof(T));
        return py::reinterpret_steal<py::object>(a);
    }

    template <typename T>
    static py::array_t<T> to_array(const std::vector<T>& v) {
        py::array_t<T> out(static_cast<py::ssize_t>(v.size()));
        if (!v.empty()) std::copy(v.begin(), v.end(), out.mutable_data());
        return out;
    }

    int32_t lookup(std::string_view piece, bool cont) {
        if (cont) {
            scratch_.assign("##");
            scratch_.append(piece.data(), piece.size());
            auto it = index_.find(std::string_view(scratch_));
            return it == index_.end() ? -1 : it->second;
        }
        auto it = index_.find(piece);
        return it == index_.end() ? -1 : it->second;
    }

    // WordPiece on one piece: UTF-8 bytes `p`, code-point byte positions `pos` (size n+1), and the
    // original-text offset of each code point `offs` (size n+1, offs[n] = end of the piece's text; a char
    // mapped to several code points gives each of them its offset).  A WordPiece piece spans
    // [offs[first], offs[last] + 1), the last one [offs[first], offs[n]).
    template <typename Emit>
    void wordpiece(std::string_view p, const std::vector<uint32_t>& cps, const std::vector<size_t>& pos,
                   const std::vector<int32_t>& offs, Emit& emit) {
        const size_t n = cps.size();
        if (n == 0) return;
        const int32_t offset = offs[0], end_all = offs[n];
        bool clause = n == 1 && is_clause(cps[0]);
        if (n > static_cast<size_t>(kMaxWordChars)) {
            emit(Token{unk_id_, offset, end_all, false, false});
            return;
        }
        if (n == 1 && cps[0] < kDirectTable) {
            int32_t id = first_id_[cps[0]];
            emit(Token{id < 0 ? unk_id_ : id, offset, end_all, false, clause});
            return;
        }
        pieces_.clear();
        piece_starts_.clear();
        size_t start = 0;
        while (start < n) {
            size_t end = n;
            while (end > start && pos[end] - pos[start] + (start > 0 ? 2 : 0) > max_token_bytes_) --end;
            int32_t found = -1;
            for (; end > start; --end) {
                if (end == start + 1 && cps[start] < kDirectTable) {
                    found = start > 0 ? cont_id_[cps[start]] : first_id_[cps[start]];
                } else {
                    found = lookup(p.substr(pos[start], pos[end] - pos[start]), start > 0);
                }
                if (found >= 0) break;
            }
            if (found < 0) {
                emit(Token{unk_id_, offset, end_all, false, false});
                return;
            }
            pieces_.push_back(found);
            piece_starts_.push_back(start);
            start = end;
        }
        piece_starts_.push_back(n);
        for (size_t k = 0; k < pieces_.size(); ++k) {
            const size_t next = piece_starts_[k + 1];
            const int32_t b = offs[piece_starts_[k]], e = next == n ? end_all : offs[next - 1] + 1;
            emit(Token{pieces_[k], b, e, k > 0, clause});
        }
    }

    // One whitespace-delimited word (already cleaned, no CJK): map, split at punctuation, WordPiece.
    template <typename Emit>
    void flush_word(Emit& emit) {
        if (word_cps_.empty()) return;
        if (word_complex_) {
            flush_complex(emit);
        } else {
            piece_.clear();
            piece_cps_.clear();
            piece_pos_.clear();
            piece_offs_.clear();
            auto end_piece = [&]() {
                if (piece_cps_.empty()) return;
                piece_pos_.push_back(piece_.size());
                piece_offs_.push_back(piece_offs_.back() + 1);
                wordpiece(piece_, piece_cps_, piece_pos_, piece_offs_, emit);
                piece_.clear();
                piece_cps_.clear();
                piece_pos_.clear();
                piece_offs_.clear();
            };
            auto add = [&](uint32_t c, int32_t off) {
                if (flags_[c] & kPunct) {
                    end_piece();
                    piece_pos_.push_back(0);
                    piece_cps_.push_back(c);
                    piece_offs_.push_back(off);
                    append_utf8(piece_, c);
                    end_piece();
                    return;
                }
                piece_pos_.push_back(piece_.size());
                piece_cps_.push_back(c);
                piece_offs_.push_back(off);
                append_utf8(piece_, c);
            };
            for (size_t k = 0; k < word_cps_.size(); ++k) {
                uint32_t c = word_cps_[k];
                if (flags_[c] & kMapped) {
                    for (uint32_t m : mapping_.at(c)) add(m, word_offs_[k]);
                } else {
                    add(c, word_offs_[k]);
                }
            }
            end_piece();
        }
        word_cps_.clear();
        word_offs_.clear();
        word_complex_ = false;
    }

    template <typename Emit>
    void flush_complex(Emit& emit) {
        std::string w;
        for (uint32_t c : word_cps_) append_utf8(w, c);
        py::object res = fallback_(py::str(w.data(), w.size()));
        auto tup = res.cast<py::tuple>();
        auto texts = tup[0].cast<std::vector<std::string>>();
        auto rel = tup[1].cast<std::vector<int64_t>>();
        if (texts.size() != rel.size()) throw std::runtime_error("tokenizer fallback returned mismatched lists");
        // per piece, the index in the word of each code point's character (None: not known exactly)
        std::vector<std::vector<int64_t>> owners;
        if (tup.size() > 2 && !tup[2].is_none()) owners = tup[2].cast<std::vector<std::vector<int64_t>>>();
        if (!owners.empty() && owners.size() != texts.size())
            throw std::runtime_error("tokenizer fallback returned mismatched lists");
        auto first = [&](size_t k) -> int32_t {
            int64_t r = rel[k];
            if (r < 0 || static_cast<size_t>(r) >= word_offs_.size()) r = 0;
            return word_offs_[static_cast<size_t>(r)];
        };
        const int32_t word_end = word_offs_.back() + 1;
        std::vector<uint32_t> cps;
        std::vector<size_t> pos;
        std::vector<int32_t> offs;
        for (size_t k = 0; k < texts.size(); ++k) {
            cps.clear();
            pos.clear();
            const auto* s = reinterpret_cast<const unsigned char*>(texts[k].data());
            size_t i = 0;
            while (i < texts[k].size()) {
                pos.push_back(i);
                cps.push_back(decode_utf8(s, texts[k].size(), i));
            }
            pos.push_back(texts[k].size());
            // The piece covers [b, e) of the original text (to the next piece, so a mark that accent stripping
            // removed stays in the span before it).  Its code points sit at their own characters when the fallback
            // knows them, else they are spread over the span.
            const int32_t b = first(k);
            int32_t e = k + 1 < texts.size() ? first(k + 1) : word_end;
            if (e <= b) e = word_end;
            offs.clear();
            const size_t n = cps.size();
            if (!owners.empty()) {
                if (owners[k].size() != n) throw std::runtime_error("tokenizer fallback returned mismatched lists");
                for (int64_t r : owners[k]) {
                    if (r < 0 || static_cast<size_t>(r) >= word_offs_.size())
                        throw std::runtime_error("tokenizer fallback returned an index outside the word");
                    offs.push_back(word_offs_[static_cast<size_t>(r)]);
                }
                offs.push_back(n && e <= offs.back() ? offs.back() + 1 : e);
            } else {
                for (size_t j = 0; j < n; ++j)
                    offs.push_back(b + static_cast<int32_t>((static_cast<int64_t>(e - b) * static_cast<int64_t>(j)) /
                                                             static_cast<int64_t>(n)));
                offs.push_back(e);
            }
            wordpiece(texts[k], cps, pos, offs, emit);
        }
    }

    // Scans the text once: cleaning, CJK split, word collection, sentence breaks.
    // `base`: the code-point offset of `text` in the document (offsets of tokens are the document's).
    template <typename Emit>
    void run(std::string_view text, Emit emit, std::vector<int32_t>* breaks, Counts* counts = nullptr,
             int32_t base = 0) {
        const auto* s = reinterpret_cast<const unsigned char*>(text.data());
        const size_t n = text.size();
        if (n > static_cast<size_t>(INT32_MAX)) throw std::invalid_argument("text longer than 2 GiB");
        size_t i = 0;
        int32_t off = base;
        bool after_terminal = false;
        int64_t cjk = 0;
        word_cps_.clear();
        word_offs_.clear();
        word_complex_ = false;
        for (; i < n; ++off) {
            uint32_t c = decode_utf8(s, n, i);
            uint8_t f = flags_[c];
            if (breaks != nullptr && !(f & kRemove)) {
                if (is_newline(c)) {
                    breaks->push_back(off);
                    after_terminal = false;
                } else if (after_terminal && !is_terminal(c) && !is_closer(c)) {
                    breaks->push_back(off);
                    after_terminal = false;
                }
                if (is_terminal(c)) after_terminal = true;
            }
            if (f & (kRemove | kSpace | kCjk)) {
                if (f & kRemove) continue;
                flush_word(emit);
                if (f & kCjk) {
                    ++cjk;
                    if (f & kMapped) {
                        const auto& m = mapping_.at(c);
                        std::string p;
                        std::vector<size_t> pos;
                        for (uint32_t x : m) {
                            pos.push_back(p.size());
                            append_utf8(p, x);
                        }
                        pos.push_back(p.size());
                        std::vector<int32_t> offs(m.size(), off);
                        offs.push_back(off + 1);
                        wordpiece(p, m, pos, offs, emit);
                    } else {
                        int32_t id = c < kDirectTable ? first_id_[c] : lookup_single(c);
                        emit(Token{id < 0 ? unk_id_ : id, off, off + 1, false, false});
                    }
                }
                continue;
            }
            word_cps_.push_back(c);
            word_offs_.push_back(off);
            if (f & kComplex) word_complex_ = true;
        }
        flush_word(emit);
        if (counts != nullptr) {
            counts->cjk = cjk;
            counts->chars = off - base;
        }
    }

    size_t slot_of(uint64_t key) const { return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> word_shift_); }

    // Whether token `id`, whose key equals that of the word `cps` (n characters), is that word: always for a
    // short key (it is the word), else compared.
    bool same_token(int32_t id, const uint32_t* cps, size_t n) const {
        if (n <= 3) return true;
        const uint32_t b = token_cp_start_[static_cast<size_t>(id)], e = token_cp_start_[static_cast<size_t>(id) + 1];
        return e - b == n && std::memcmp(token_cps_.data() + b, cps, n * sizeof(uint32_t)) == 0;
    }

    // The id of the token whose characters are `cps` (n of them, key `key`), or -1.
    int32_t find_word(uint64_t key, const uint32_t* cps, size_t n) const {
        for (size_t k = slot_of(key);; k = (k + 1) & word_mask_) {
            const WordSlot& slot = word_slots_[k];
            if (slot.id < 0) return -1;
            if (slot.key == key && ((key & kLongKey) == 0 || same_token(slot.id, cps, n))) return slot.id;
        }
    }

    int32_t lookup_single(uint32_t c) {
        std::string p;
        append_utf8(p, c);
        return lookup(p, false);
    }

    std::vector<std::string> tokens_;
    int32_t unk_id_;
    py::function fallback_;
    std::vector<uint8_t> flags_;
    std::unordered_map<uint32_t, std::vector<uint32_t>> mapping_;
    std::unordered_map<std::string_view, int32_t> index_;
    std::vector<int32_t> first_id_, cont_id_;
    struct WordSlot {  // 16 bytes: four per cache line
        uint64_t key = 0;
        int32_t id = -1;
        int32_t unused = 0;
    };
    std::vector<WordSlot> word_slots_;  // the word table (find_word)
    size_t word_mask_ = 0;
    int word_shift_ = 64;
    std::vector<uint32_t> token_cps_, token_cp_start_;  // the characters of tokens longer than three (same_token)
    // per-document state of the word-level mode, reused across calls
    std::vector<WordRec> word_recs_;
    std::vector<uint32_t> doc_cps_;
    std::string word_utf8_;
    Scan scan_;
    std::shared_ptr<jieba_dag::Segmenter> seg_;  // the word-level mode's segmenter (set_segmenter)
    jieba_dag::Segmenter::Scratch seg_scratch_;
    std::vector<int32_t> seg_ends_;
    std::vector<int32_t> doc_ids_;
    std::vector<uint8_t> doc_wwm_, doc_clause_;
    std::vector<int64_t> doc_sent_starts_;
    size_t max_token_bytes_ = 0;
    // scratch buffers reused across calls
    std::string scratch_, piece_;
    std::vector<uint32_t> word_cps_, piece_cps_;
    std::vector<int32_t> word_offs_, piece_offs_;
    std::vector<size_t> piece_pos_, piece_starts_;
    std::vector<int32_t> pieces_;
    bool word_complex_ = false;
};

// Start offsets (in code points) of the non-empty words of a segmenter's output, which must cover
// `n_chars` code points exactly.  The Python version (lengths, cumsum, filter) cost a third of the
// rjieba path's time.
py::array_t<int32_t> word_starts(const py::list& words, py::ssize_t n_chars) {
    std::vector<int32_t> starts;
    starts.reserve(static_cast<size_t>(py::len(words)));
    py::ssize_t offset = 0;
    for (const py::handle& w : words) {
        if (!PyUnicode_Check(w.ptr())) {
            throw std::invalid_argument("segmenter output must be a list of str");
        }
        const py::ssize_t len = PyUnicode_GET_LENGTH(w.ptr());
        if (len > 0) {
            if (offset > INT32_MAX) {
                throw std::invalid_argument("document longer than 2^31 characters");
            }
            starts.push_back(static_cast<int32_t>(offset));
        }
        offset += len;
    }
    if (offset != n_chars) {
        throw std::runtime_error("segmenter output covers " + std::to_string(offset) + " of " +
                                 std::to_string(n_chars) + " characters");
    }
    py::array_t<int32_t> out(static_cast<py::ssize_t>(starts.size()));
    std::copy(starts.begin(), starts.end(), out.mutable_data());
    return out;
}

}  // namespace

PYBIND11_MODULE(_text_core, m) {
    m.doc() = "BERT tokenizer + document encoder fast path (see data_tools/tokenizer.py)";
    py::class_<Tokenizer>(m, "Tokenizer")
        .def(py::init<const std::vector<std::string>&, int32_t, py::array_t<uint8_t>,
                      const std::vector<uint32_t>&, const std::vector<std::string>&, py::function>(),
             py::arg("vocab"), py::arg("unk_id"), py::arg("flags"), py::arg("map_cps"), py::arg("map_texts"),
             py::arg("fallback"))
        .def("encode", &Tokenizer::encode, py::arg("text"))
        .def("encode_offsets", &Tokenizer::encode_offsets, py::arg("text"))
        .def("encode_document", &Tokenizer::encode_document, py::arg("text"), py::arg("word_starts"),
             py::arg("max_sentence_tokens"))
        .def("encode_words", &Tokenizer::encode_words, py::arg("text"), py::arg("words"), py::arg("with_offsets"))
        .def("encode_document_words", &Tokenizer::encode_document_words, py::arg("text"), py::arg("words"),
             py::arg("max_sentence_tokens"))
        .def("set_segmenter", &Tokenizer::set_segmenter, py::arg("segmenter"))
        .def("encode_text", &Tokenizer::encode_text, py::arg("text"), py::arg("with_offsets"))
        .def("encode_documents_text", &Tokenizer::encode_documents_text, py::arg("texts"),
             py::arg("max_sentence_tokens"))
        .def("encode_document_text", &Tokenizer::encode_document_text, py::arg("text"),
             py::arg("max_sentence_tokens"))
        .def_property_readonly("vocab_size", &Tokenizer::vocab_size);
    jieba_dag::bind(m);
    m.def("word_starts", &word_starts, py::arg("words"), py::arg("n_chars"),
          "Start offsets (int32) of the non-empty words, which must cover n_chars characters");
}
