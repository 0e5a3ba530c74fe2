/* edgeclip.h: the C API of libedgeclip.so, the on-device runtime of an edgeclip bundle.
 *
 * Open an extracted bundle, turn images and text into L2-normalised embeddings with its compiled
 * towers, and rank labels (CLIP's softmax over 100 x cosine). No Python, no board libraries
 * beyond libc/libstdc++. Usable from C99 and C++. Functions returning int give 0 on success and
 * -1 on failure unless said otherwise; after a failure edgeclip_last_error() says why (one line,
 * per thread, valid until the thread's next edgeclip call). A model is not safe to use from two
 * threads at once; open one per thread. Guide: docs/device-runtime.md. */
#ifndef EDGECLIP_H_
#define EDGECLIP_H_

#ifdef __cplusplus
extern "C" {
#endif

typedef struct edgeclip_model edgeclip_model;

enum { EDGECLIP_IMAGE = 1, EDGECLIP_TEXT = 2 };

/* Opens the bundle in `bundle_dir` (the folder with runner.plan and manifest.json). `variant`: a
 * variant of its plan ("ternary", "fp32", ...), or NULL for the first (best) one this CPU runs that
 * holds `towers`. The CPU's features are checked before anything loads: one it lacks fails here,
 * edgeclip_last_error() naming it and the targets to build instead. `towers`: EDGECLIP_IMAGE | EDGECLIP_TEXT, only these are loaded
 * (0 loads none: enough for edgeclip_tokenize). `threads`: the thread pool size, 0 = the
 * physical cores (or TVM_NUM_THREADS); the pool is per process, so the first model opened sets it.
 * Loads the labels baked into the bundle when it has them. NULL on failure. */
edgeclip_model* edgeclip_open(const char* bundle_dir, const char* variant, int towers, int threads);
void edgeclip_close(edgeclip_model* model); /* NULL is fine */
const char* edgeclip_last_error(void);
/* The variant the model was opened with (the one chosen when edgeclip_open got NULL). */
const char* edgeclip_variant(const edgeclip_model* model);

/* D, the length of every embedding (and of `out` below); -1 when no tower is loaded. */
int edgeclip_embedding_dim(const edgeclip_model* model);

/* A JPEG or PNG file (EXIF orientation applied) through the bundle's preprocessing and image tower. */
int edgeclip_embed_image_file(edgeclip_model* model, const char* path, float* out);
/* `count` image files into out[count * D], in path order, up to `batch` (1 to 64) a tower call: the
 * compiled batch sizes up to `batch` (edgeclip build --batch), the largest that fits the images
 * left each call, so 11 images at batch 8 on a 1,8 bundle run as 8 + 1 + 1 + 1. Equal to
 * edgeclip_embed_image_file on each path within float rounding. A size is loaded on first use. */
int edgeclip_embed_image_files(edgeclip_model* model, const char* const* paths, int count, int batch, float* out);
/* 8-bit pixels, row-major HWC, `channels` 1 (gray) or 3 (RGB), through the same preprocessing. */
int edgeclip_embed_pixels(edgeclip_model* model, const unsigned char* pixels, int width, int height, int channels,
                          float* out);
int edgeclip_embed_text(edgeclip_model* model, const char* utf8, float* out);
/* `count` texts into out[count * D], in order, up to `batch` (1 to 64) a text tower call, as
 * edgeclip_embed_image_files does with images (a sentence bundle's --batch sizes); equal to
 * edgeclip_embed_text on each within float rounding. */
int edgeclip_embed_texts(edgeclip_model* model, const char* const* texts, int count, int batch, float* out);

/* The text tower's token ids for `utf8`: writes the whole padded sequence the tower sees (its
 * context length; `capacity` must be at least that) and returns how many of them are real tokens
 * (the attention mask's ones, start and end tokens included), -1 on failure. */
int edgeclip_tokenize(edgeclip_model* model, const char* utf8, long long* ids, int capacity);

/* Replaces the labels: each becomes `prompt` (NULL = "{}", which must hold "{}" exactly once)
 * with "{}" replaced by the label, embedded by the text tower. 1 to 10000 labels of 1 to 256
 * bytes, no newlines. Needs the text tower loaded. */
int edgeclip_set_labels(edgeclip_model* model, const char* const* labels, int count, const char* prompt);
int edgeclip_label_count(const edgeclip_model* model); /* 0 when there are none */
const char* edgeclip_label(const edgeclip_model* model, int index); /* NULL when out of range */

/* probs[i] = the probability of label i for an image embedding (D floats): softmax over
 * 100 x cosine, in label order (probs holds edgeclip_label_count() floats). */
int edgeclip_classify(edgeclip_model* model, const float* image_embedding, float* probs);

/* The serve protocol (docs/device-runtime.md#serve), for applications that take requests as text:
 * `json_line` is one request, e.g. {"id": 7, "op": "classify", "image": "cat.jpg", "top": 3}
 * (ops: classify with "image" and optional "labels", "prompt", "top"; embed with "image" or
 * "text"; tokenize with "text"; search with "index" and "text" or "image", optional "k").
 * *reply becomes one line of JSON without a newline, allocated
 * here (free it with edgeclip_free_string): {"id": 7, "result": ...}, the result shaped as the
 * line edgeclip-runner classify/embed/tokenize prints, or {"id": 7, "error": "one line"}.
 * Returns 0 for a result, 1 for an error reply (edgeclip_last_error() says the same), -1 when no
 * reply could be made (`reply` NULL, out of memory; *reply is then NULL). A request's "labels"
 * hold for that request only: later requests without labels rank the model's own labels (baked,
 * or set by edgeclip_set_labels) again, and the last request label set is kept embedded, so
 * repeating it costs no text-tower runs. Requests over EDGECLIP_MAX_REQUEST_BYTES get an error. */
#define EDGECLIP_MAX_REQUEST_BYTES 1048576
int edgeclip_handle_request(edgeclip_model* model, const char* json_line, char** reply);
void edgeclip_free_string(char* text); /* NULL is fine */

/* Search (docs/device-runtime.md#search). An index file holds a corpus's embeddings, int8 per
 * vector (encoding "int8": every row scored in int8) or with their sign bits too ("binary": a
 * Hamming pass over the bits, 8x fewer bytes read), each item's text (and 1-based line number) or
 * image path, and the identity of the model that embedded them; a query must come from the same
 * bundle and variant. Either way the `rerank` best of that first pass are re-scored with the query
 * at 20 bits, so scores agree to the bit on every CPU. */
typedef struct edgeclip_index edgeclip_index;

/* Embeds `count` items with the model's text tower (`tower` EDGECLIP_TEXT; lines[i] is item i's
 * 1-based line number, NULL = i + 1) or image tower (EDGECLIP_IMAGE, items are file paths), `batch`
 * items a tower call as in edgeclip_embed_texts / edgeclip_embed_image_files, and writes the index to `out_path`
 * atomically. `encoding`: "int8" (NULL) or "binary". */
int edgeclip_index_build(edgeclip_model* model, int tower, const char* const* items, const int* lines, int count,
                         int batch, const char* encoding, const char* out_path);
/* Maps and checks an index file (length, CRC-32, sizes, header); NULL on failure. */
edgeclip_index* edgeclip_index_open(const char* path);
void edgeclip_index_close(edgeclip_index* index); /* NULL is fine */
int edgeclip_index_count(const edgeclip_index* index);
int edgeclip_index_dim(const edgeclip_index* index);
/* EDGECLIP_TEXT or EDGECLIP_IMAGE: the tower its items were embedded by (queries may use either
 * tower of the same bundle, e.g. text queries over an image index). */
int edgeclip_index_tower(const edgeclip_index* index);
/* Item `id`'s text or image path (NUL-terminated, valid until the index is closed), NULL when out of range. */
const char* edgeclip_index_item(const edgeclip_index* index, int id);
int edgeclip_index_line(const edgeclip_index* index, int id); /* 0 for an image item, -1 out of range */

/* The `k` (1 to 1000) nearest items to a unit `query` of edgeclip_index_dim floats: ids[] and
 * scores[] (cosine estimates) best first; returns how many (min(k, count)), -1 on failure.
 * `rerank`: how many rows of the first pass are re-scored (0 = the default, 100, or k if larger). */
int edgeclip_search_vector(const edgeclip_index* index, const float* query, int k, int rerank, int* ids,
                           float* scores);
/* The same for a text (or image file) embedded by `model`, which must be the model that built the
 * index (same bundle and variant); the model needs that tower loaded. */
int edgeclip_search_text(edgeclip_model* model, const edgeclip_index* index, const char* utf8, int k, int rerank,
                         int* ids, float* scores);
int edgeclip_search_image(edgeclip_model* model, const edgeclip_index* index, const char* path, int k, int rerank,
                          int* ids, float* scores);

#ifdef __cplusplus
}
#endif

#endif /* EDGECLIP_H_ */
