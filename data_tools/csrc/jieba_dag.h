// jieba's accurate mode without HMM, on jieba's dictionary: the words of `rjieba.cut(text, False)` (jieba-rs),
// which is what transformers' RoFormerTokenizer cuts text with (data_tools/word_tokenizer.py).
//
// The rules, as jieba-rs applies them (jieba/src/lib.rs, `cut` with hmm=false):
// - the text splits into maximal runs of "han" characters (CJK ideographs of the ranges in `is_han`, ASCII letters
//   and digits, and + # & . _ % -) and runs of everything else;
// - outside a han run every character is a word of its own, except "\r\n", which is one word;
// - in a han run, every position has the dictionary words that start there (none: the character alone), and the
//   route is the one of highest summed ln(freq) - ln(total) from the end of the run backwards; a tie goes to the
//   longer word;
// - consecutive one-character steps of the route that are ASCII letters or digits are joined into one word.
// Unknown characters count as frequency 1 (ln 1 = 0).  The arithmetic is IEEE double in the same order as
// jieba-rs's ((ln freq - ln total) + rest of the route), so equal routes compare equal.
#pragma once

#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace jieba_dag {

// Whether jieba-rs counts `c` into a han run (its RE_HAN_DEFAULT class).
inline bool is_han(uint32_t c) {
    if (c - 0x4E00u <= 0x9FFFu - 0x4E00u) return true;  // the main CJK block: nearly every character of the text
    if (c < 0x80) {
        return (c - '0' <= 9u) || ((c | 0x20) - 'a' <= 25u) || c == '+' || c == '#' || c == '&' || c == '.' ||
               c == '_' || c == '%' || c == '-';
    }
    return (c - 0x3400u <= 0x4DBFu - 0x3400u) || (c - 0xF900u <= 0xFAFFu - 0xF900u) ||
           (c - 0x20000u <= 0x2A6DFu - 0x20000u) || (c - 0x2A700u <= 0x2EBEFu - 0x2A700u) ||
           (c - 0x2F800u <= 0x2FA1Fu - 0x2F800u);
}

inline bool is_ascii_alnum(uint32_t c) { return c < 0x80 && ((c - '0' <= 9u) || ((c | 0x20) - 'a' <= 25u)); }

// The characters of a Python str as code points, into out[0, len) (out must have room).  Lone surrogates stay
// what they are: not han, each one a word.
inline void copy_str(PyObject* s, uint32_t* out) {
    const Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    const void* data = PyUnicode_DATA(s);
    switch (PyUnicode_KIND(s)) {
        case PyUnicode_1BYTE_KIND:
            for (Py_ssize_t i = 0; i < n; ++i) out[i] = static_cast<const Py_UCS1*>(data)[i];
            break;
        case PyUnicode_2BYTE_KIND:
            for (Py_ssize_t i = 0; i < n; ++i) out[i] = static_cast<const Py_UCS2*>(data)[i];
            break;
        default:
            for (Py_ssize_t i = 0; i < n; ++i) out[i] = static_cast<const Py_UCS4*>(data)[i];
    }
}

class Segmenter {
public:
    // Buffers of one caller, reused across cuts (the segmenter itself is read-only once loaded).
    struct Scratch {
        std::vector<double> logp;   // per position of a han run: the best route's log-probability from there
        std::vector<int32_t> next;  // where the best route's first word from that position ends
    };

    // Loads a jieba dictionary file (lines "word freq [tag]"); std::invalid_argument names the line of a bad entry.
    explicit Segmenter(const std::string& dict_path);

    // Appends to `ends` the end offset of every word of cps[0, n) (code points, increasing, the last one n).
    void cut(const uint32_t* cps, size_t n, std::vector<int32_t>& ends, Scratch& scratch) const;

    size_t n_entries() const { return n_entries_; }
    uint64_t total() const { return total_; }
    size_t n_nodes() const { return nodes_.size() - 1; }

private:
    // A trie node: a prefix of dictionary words.  Its children are the nodes first_child .. first_child + count - 1,
    // their characters labels_[first_child ..] in increasing order; word_logp_[node] when it ends a word.
    struct Node {
        uint32_t first_child = 0;
        uint32_t count = 0;  // children; kWord set when the prefix is a dictionary word
    };
    static constexpr uint32_t kWord = 1u << 31;
    static constexpr uint32_t kRootTable = 0x10000;  // characters below it have a direct root transition

    uint32_t root_child(uint32_t c) const {
        if (c < kRootTable) return root_[c];
        auto it = root_astral_.find(c);
        return it == root_astral_.end() ? 0 : it->second;
    }

    uint32_t child(const Node& nd, uint32_t c) const {
        const uint32_t n = nd.count & ~kWord;
        const uint32_t* lab = labels_.data() + nd.first_child;
        if (n <= 8) {
            for (uint32_t k = 0; k < n; ++k)
                if (lab[k] == c) return nd.first_child + k;
            return 0;
        }
        uint32_t lo = 0, hi = n;
        while (lo < hi) {
            const uint32_t mid = (lo + hi) >> 1;
            if (lab[mid] < c) lo = mid + 1; else hi = mid;
        }
        return lo < n && lab[lo] == c ? nd.first_child + lo : 0;
    }

    struct Entry {  // one dictionary line: its word's characters pool[start, start + len), its frequency
        uint32_t start, len;
        uint64_t freq;
    };
    uint32_t build_children(uint32_t node, const std::vector<uint32_t>& pool, const std::vector<Entry>& entries,
                            const std::vector<uint32_t>& order, size_t lo, size_t hi, uint32_t depth);
    void cut_han_run(const uint32_t* cps, size_t n, int32_t base, std::vector<int32_t>& ends,
                     Scratch& scratch) const;

    std::vector<uint32_t> root_;  // character -> level-1 node (0: no word starts with it)
    std::unordered_map<uint32_t, uint32_t> root_astral_;
    std::vector<Node> nodes_;     // node 0 is "none"
    std::vector<uint32_t> labels_;
    std::vector<double> word_logp_;  // ln(freq) - ln(total) of the word a node ends
    double unknown_logp_ = 0.0;      // ln(1) - ln(total): a character no dictionary word starts with
    uint64_t total_ = 0;
    size_t n_entries_ = 0;
};

// Registers the Python class `JiebaDag` (a loaded Segmenter; `cut(text) -> list[str]`) on module `m`.
void bind(pybind11::module_& m);

}  // namespace jieba_dag
