/* The control path's reader: TLV frames reassembled from any byte stream,
 * in pieces, then CtrlMsg decoding of every frame, as the client and the
 * simulator do with what arrives on the link. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctrl_msg.h"
#include "espfleet/tlv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static ef_tlv_reader r; /* large: not on the stack */
  ef_tlv_frame f;
  ef_tlv_reader_reset(&r);
  size_t step = size ? 1 + data[0] % 97 : 1;
  for (size_t off = 0; off < size;) {
    size_t n = size - off < step ? size - off : step;
    if (n > ef_tlv_reader_space(&r)) n = ef_tlv_reader_space(&r);
    if (n == 0 || ef_tlv_reader_feed(&r, data + off, n) != EF_OK) break;
    off += n;
    while (ef_tlv_reader_next(&r, &f)) {
      if (strlen(f.endpoint) > EF_TLV_MAX_EP) abort();
      Espfleet__CtrlMsg *m = NULL;
      if (ef_ctrl_msg_parse(f.payload, f.payload_len, &m) == EF_OK) {
        int32_t resp;
        (void)ef_ctrl_msg_resp(m, &resp);
        (void)ef_ctrl_msg_name((int)m->msg_id);
      }
      ef_ctrl_msg_free(m);
    }
  }
  return 0;
}
