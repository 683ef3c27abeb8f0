// The jieba segmenter of jieba_dag.h: dictionary loading, the trie, the route.  Compiled into data_tools._text_core
// (setup.py), whose Tokenizer cuts with it (encode_document_text).
#include "jieba_dag.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>

namespace py = pybind11;

namespace jieba_dag {

namespace {

bool is_ascii_space(unsigned char b) { return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f'; }

// Decodes the UTF-8 word s[0, n) to code points appended to `out`; false if it is not valid UTF-8.
bool decode_word(const unsigned char* s, size_t n, std::vector<uint32_t>& out) {
    size_t i = 0;
    while (i < n) {
        const unsigned char b = s[i];
        uint32_t cp;
        size_t len;
        if (b < 0x80) {
            cp = b;
            len = 1;
        } else if ((b & 0xE0) == 0xC0) {
            cp = b & 0x1F;
            len = 2;
        } else if ((b & 0xF0) == 0xE0) {
            cp = b & 0x0F;
            len = 3;
        } else if ((b & 0xF8) == 0xF0) {
            cp = b & 0x07;
            len = 4;
        } else {
            return false;
        }
        if (i + len > n) return false;
        for (size_t k = 1; k < len; ++k) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp > 0x10FFFF) return false;
        out.push_back(cp);
        i += len;
    }
    return true;
}

}  // namespace

Segmenter::Segmenter(const std::string& dict_path) : root_(kRootTable, 0) {
    std::ifstream f(dict_path, std::ios::binary);
    if (!f) throw std::invalid_argument("jieba dictionary " + dict_path + ": cannot be read");
    std::ostringstream buf;
    buf << f.rdbuf();
    const std::string text = buf.str();

    // Every line "word freq [tag]", fields split at ASCII whitespace; a line without a frequency counts 0.  Every
    // line adds to the total, and a word listed twice takes its last line's frequency (as jieba and jieba-rs).
    std::vector<uint32_t> pool;
    std::vector<Entry> entries;
    pool.reserve(text.size() / 3);
    entries.reserve(text.size() / 12);
    const auto* s = reinterpret_cast<const unsigned char*>(text.data());
    const size_t n = text.size();
    size_t line_no = 0;
    for (size_t i = 0; i < n;) {
        size_t eol = i;
        while (eol < n && s[eol] != '\n') ++eol;
        ++line_no;
        size_t p = i;
        while (p < eol && is_ascii_space(s[p])) ++p;
        if (p < eol) {
            size_t q = p;
            while (q < eol && !is_ascii_space(s[q])) ++q;
            const size_t start = pool.size();
            auto bad = [&](const std::string& what) {
                return std::invalid_argument("jieba dictionary " + dict_path + " line " + std::to_string(line_no) +
                                             ": " + what);
            };
            if (!decode_word(s + p, q - p, pool)) throw bad("the word is not UTF-8");
            while (q < eol && is_ascii_space(s[q])) ++q;
            uint64_t freq = 0;
            if (q < eol) {
                size_t r = q;
                if (s[r] == '+') ++r;
                if (r == eol || is_ascii_space(s[r])) throw bad("expected a frequency (an integer >= 0)");
                for (; r < eol && !is_ascii_space(s[r]); ++r) {
                    if (static_cast<unsigned>(s[r] - '0') > 9u) throw bad("expected a frequency (an integer >= 0)");
                    const uint64_t next = freq * 10 + (s[r] - '0');
                    if (next / 10 != freq) throw bad("frequency too large");
                    freq = next;
                }
            }
            if (total_ + freq < total_) throw bad("the frequencies add up past 2^64");
            total_ += freq;
            entries.push_back(Entry{static_cast<uint32_t>(start), static_cast<uint32_t>(pool.size() - start), freq});
        }
        i = eol + 1;
    }
    n_entries_ = entries.size();
    if (entries.empty()) throw std::invalid_argument("jieba dictionary " + dict_path + ": no entries");

    // jieba-rs: ln(freq as f64) - ln(total as f64), each word's once; ln 1 = 0 for a character not in the dictionary
    const double log_total = std::log(static_cast<double>(total_));
    unknown_logp_ = 0.0 - log_total;
    std::vector<uint32_t> order(entries.size());
    for (uint32_t k = 0; k < order.size(); ++k) order[k] = k;
    // by characters; equal words stay in file order, so the last line of a word is the last of its group
    std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
        const Entry &x = entries[a], &y = entries[b];
        return std::lexicographical_compare(pool.begin() + x.start, pool.begin() + x.start + x.len,
                                            pool.begin() + y.start, pool.begin() + y.start + y.len);
    });
    nodes_.reserve(entries.size() * 3 / 2 + 2);
    labels_.reserve(entries.size() * 3 / 2 + 2);
    word_logp_.reserve(entries.size() * 3 / 2 + 2);
    nodes_.emplace_back();  // node 0: none
    labels_.push_back(0);
    word_logp_.push_back(0.0);
    // the level-1 nodes, one per first character, then each one's subtree
    size_t lo = 0;
    std::vector<std::pair<uint32_t, std::pair<size_t, size_t>>> level1;
    while (lo < order.size()) {
        const Entry& e = entries[order[lo]];
        if (e.len == 0) {  // cannot happen (a word is a non-empty field), kept as the invariant build_children needs
            ++lo;
            continue;
        }
        const uint32_t c = pool[e.start];
        size_t hi = lo + 1;
        while (hi < order.size() && pool[entries[order[hi]].start] == c) ++hi;
        level1.push_back({c, {lo, hi}});
        lo = hi;
    }
    const uint32_t first = static_cast<uint32_t>(nodes_.size());
    nodes_.resize(nodes_.size() + level1.size());
    labels_.resize(nodes_.size(), 0);
    word_logp_.resize(nodes_.size(), 0.0);
    for (size_t k = 0; k < level1.size(); ++k) {
        const uint32_t node = first + static_cast<uint32_t>(k), c = level1[k].first;
        labels_[node] = c;
        if (c < kRootTable) root_[c] = node; else root_astral_[c] = node;
    }
    for (size_t k = 0; k < level1.size(); ++k)
        build_children(first + static_cast<uint32_t>(k), pool, entries, order, level1[k].second.first,
                       level1[k].second.second, 1);
    // word_logp_ from the frequencies build_children left in it
    for (size_t node = 1; node < nodes_.size(); ++node)
        if (nodes_[node].count & kWord) word_logp_[node] = std::log(word_logp_[node]) - log_total;
}

// Fills `node` (the prefix its entries order[lo, hi) share, `depth` characters) and its subtree.  Returns the
// number of nodes made.
uint32_t Segmenter::build_children(uint32_t node, const std::vector<uint32_t>& pool, const std::vector<Entry>& entries,
                                   const std::vector<uint32_t>& order, size_t lo, size_t hi, uint32_t depth) {
    size_t k = lo;
    while (k < hi && entries[order[k]].len == depth) ++k;  // the prefix itself sorts first
    if (k > lo) {
        nodes_[node].count |= kWord;
        word_logp_[node] = static_cast<double>(entries[order[k - 1]].freq);  // the log is taken once all are in
    }
    std::vector<std::pair<size_t, size_t>> groups;
    while (k < hi) {
        const uint32_t c = pool[entries[order[k]].start + depth];
        size_t e = k + 1;
        while (e < hi && pool[entries[order[e]].start + depth] == c) ++e;
        groups.push_back({k, e});
        k = e;
    }
    if (groups.empty()) return 0;
    const uint32_t first = static_cast<uint32_t>(nodes_.size());
    if (first + groups.size() >= kWord) throw std::invalid_argument("jieba dictionary: too many entries");
    nodes_.resize(nodes_.size() + groups.size());
    labels_.resize(nodes_.size(), 0);
    word_logp_.resize(nodes_.size(), 0.0);
    nodes_[node].first_child = first;
    nodes_[node].count |= static_cast<uint32_t>(groups.size());
    uint32_t made = static_cast<uint32_t>(groups.size());
    for (size_t g = 0; g < groups.size(); ++g) {
        labels_[first + g] = pool[entries[order[groups[g].first]].start + depth];
        made += build_children(first + static_cast<uint32_t>(g), pool, entries, order, groups[g].first,
                               groups[g].second, depth + 1);
    }
    return made;
}

void Segmenter::cut(const uint32_t* cps, size_t n, std::vector<int32_t>& ends, Scratch& scratch) const {
    size_t i = 0;
    while (i < n) {
        if (is_han(cps[i])) {
            size_t j = i + 1;
            while (j < n && is_han(cps[j])) ++j;
            cut_han_run(cps + i, j - i, static_cast<int32_t>(i), ends, scratch);
            i = j;
        } else {
            i += (cps[i] == '\r' && i + 1 < n && cps[i + 1] == '\n') ? 2 : 1;
            ends.push_back(static_cast<int32_t>(i));
        }
    }
}

void Segmenter::cut_han_run(const uint32_t* cps, size_t m, int32_t base, std::vector<int32_t>& ends,
                            Scratch& scratch) const {
    if (scratch.logp.size() < m + 1) {
        scratch.logp.resize(m + 1);
        scratch.next.resize(m + 1);
    }
    double* lp = scratch.logp.data();
    int32_t* nx = scratch.next.data();
    lp[m] = 0.0;
    const Node* nodes = nodes_.data();
    const double* wlp = word_logp_.data();
    // From the end backwards: the best route from i is the best over the dictionary words starting at i of the
    // word's log-probability plus the best route from its end.  Words are visited shortest first, so ">=" gives a
    // tie to the longer word.
    for (size_t i = m; i-- > 0;) {
        double best = 0.0;
        int32_t best_end = -1;
        uint32_t node = root_child(cps[i]);
        size_t k = i;
        while (node != 0) {
            const Node& nd = nodes[node];
            if (nd.count & kWord) {
                const double p = wlp[node] + lp[k + 1];
                if (best_end < 0 || p >= best) {
                    best = p;
                    best_end = static_cast<int32_t>(k + 1);
                }
            }
            if ((nd.count & ~kWord) == 0 || ++k == m) break;
            node = child(nd, cps[k]);
        }
        if (best_end < 0) {
            best = unknown_logp_ + lp[i + 1];
            best_end = static_cast<int32_t>(i + 1);
        }
        lp[i] = best;
        nx[i] = best_end;
    }
    // Forwards along the route, joining one-character steps of ASCII letters and digits.
    size_t x = 0;
    bool joining = false;
    while (x < m) {
        const size_t y = static_cast<size_t>(nx[x]);
        if (y == x + 1 && is_ascii_alnum(cps[x])) {
            joining = true;
        } else {
            if (joining) {
                ends.push_back(base + static_cast<int32_t>(x));
                joining = false;
            }
            ends.push_back(base + static_cast<int32_t>(y));
        }
        x = y;
    }
    if (joining) ends.push_back(base + static_cast<int32_t>(m));
}

void bind(py::module_& m) {
    py::class_<Segmenter, std::shared_ptr<Segmenter>>(
        m, "JiebaDag",
        "jieba's accurate mode without HMM on a jieba dictionary file: the words of rjieba.cut(text, False)")
        .def(py::init<const std::string&>(), py::arg("dict_path"))
        .def(
            "cut",
            [](const Segmenter& seg, py::str text) {
                thread_local std::vector<uint32_t> cps;
                thread_local std::vector<int32_t> ends;
                thread_local Segmenter::Scratch scratch;
                PyObject* t = text.ptr();
                const Py_ssize_t n = PyUnicode_GET_LENGTH(t);
                if (n > INT32_MAX) throw std::invalid_argument("text longer than 2^31 characters");
                cps.resize(static_cast<size_t>(n));
                copy_str(t, cps.data());
                ends.clear();
                seg.cut(cps.data(), cps.size(), ends, scratch);
                py::list out(ends.size());
                int32_t start = 0;
                for (size_t k = 0; k < ends.size(); ++k) {
                    PyObject* w = PyUnicode_Substring(t, start, ends[k]);
                    if (w == nullptr) throw py::error_already_set();
                    PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(k), w);
                    start = ends[k];
                }
                return out;
            },
            py::arg("text"), "The words of `text` (a list of str that joins to it)")
        .def_property_readonly("n_entries", &Segmenter::n_entries, "dictionary lines read")
        .def_property_readonly("total", &Segmenter::total, "sum of the frequencies")
        .def_property_readonly("n_nodes", &Segmenter::n_nodes, "trie nodes (distinct word prefixes)");
}

}  // namespace jieba_dag
