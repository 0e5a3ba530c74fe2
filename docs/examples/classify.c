/* Zero-shot classification with libedgeclip: classify BUNDLE_DIR IMAGE LABEL... prints the top label.
 * Build: see docs/device-runtime.md. */
#include <stdio.h>
#include <stdlib.h>

#include "edgeclip.h"

static int fail(edgeclip_model* model) {
  fprintf(stderr, "classify: %s\n", edgeclip_last_error());
  edgeclip_close(model);
  return 1;
}

int main(int argc, char** argv) {
  if (argc < 4) { fprintf(stderr, "usage: %s BUNDLE_DIR IMAGE LABEL...\n", argv[0]); return 2; }
  edgeclip_model* model = edgeclip_open(argv[1], NULL, EDGECLIP_IMAGE | EDGECLIP_TEXT, 0);
  if (!model) return fail(NULL);
  int count = argc - 3, best = 0;
  if (edgeclip_set_labels(model, (const char* const*)argv + 3, count, "a photo of a {}") != 0) return fail(model);
  float* embedding = malloc(sizeof(float) * edgeclip_embedding_dim(model));
  float* probs = malloc(sizeof(float) * count);
  if (edgeclip_embed_image_file(model, argv[2], embedding) != 0 || edgeclip_classify(model, embedding, probs) != 0)
    return fail(model);
  for (int i = 1; i < count; ++i) if (probs[i] > probs[best]) best = i;
  printf("%s %.4f\n", edgeclip_label(model, best), probs[best]);
  free(embedding); free(probs);
  edgeclip_close(model);
  return 0;
}
