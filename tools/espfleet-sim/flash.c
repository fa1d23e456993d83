#include "flash.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "espfleet/log.h"

#define SIM_FLASH_MAGIC  "EFSIMFL"
#define SIM_FLASH_FORMAT 2

_Static_assert(sizeof(sim_flash_header) <= SIM_FLASH_HEADER_SIZE, "header must fit its block");

static uint64_t slot_offset(const sim_flash *f, unsigned slot) {
  return SIM_FLASH_HEADER_SIZE + (uint64_t)slot * f->hdr.slot_size;
}

static ef_err pwrite_all(int fd, const void *buf, size_t len, uint64_t off) {
  const uint8_t *p = buf;
  while (len > 0) {
    ssize_t n = pwrite(fd, p, len, (off_t)off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return EF_ERR_IO;
    p += n;
    len -= (size_t)n;
    off += (uint64_t)n;
  }
  return EF_OK;
}

static ef_err pread_all(int fd, void *buf, size_t len, uint64_t off) {
  uint8_t *p = buf;
  while (len > 0) {
    ssize_t n = pread(fd, p, len, (off_t)off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return EF_ERR_IO;
    if (n == 0) { /* past the end of a sparse file that was never extended */
      memset(p, 0, len);
      break;
    }
    p += n;
    len -= (size_t)n;
    off += (uint64_t)n;
  }
  return EF_OK;
}

static ef_err load_header(sim_flash *f, const char *path) {
  ef_err err = pread_all(f->fd, &f->hdr, sizeof f->hdr, 0);
  if (err != EF_OK) {
    ef_error("%s: cannot read the flash header: %s", path, strerror(errno));
    return err;
  }
  if (memcmp(f->hdr.magic, SIM_FLASH_MAGIC, sizeof SIM_FLASH_MAGIC) != 0 ||
      f->hdr.format_version != SIM_FLASH_FORMAT || f->hdr.header_size != sizeof f->hdr ||
      f->hdr.slot_size == 0) {
    ef_error("%s: not a simulator flash file (or another format version)", path);
    return EF_ERR_CONFIG;
  }
  if (f->hdr.boot_slot > 1) f->hdr.boot_slot = SIM_FLASH_NO_SLOT;
  if (f->hdr.running_slot > 1) f->hdr.running_slot = SIM_FLASH_NO_SLOT;
  for (unsigned i = 0; i < 2; i++) {
    sim_slot_info *s = &f->hdr.slots[i];
    /* strings come from a file: make sure they end */
    s->version[sizeof s->version - 1] = '\0';
    s->project[sizeof s->project - 1] = '\0';
    s->idf_version[sizeof s->idf_version - 1] = '\0';
  }
  return EF_OK;
}

static ef_err create_layout(sim_flash *f, uint64_t slot_size) {
  memset(&f->hdr, 0, sizeof f->hdr);
  memcpy(f->hdr.magic, SIM_FLASH_MAGIC, sizeof SIM_FLASH_MAGIC);
  f->hdr.format_version = SIM_FLASH_FORMAT;
  f->hdr.header_size = sizeof f->hdr;
  f->hdr.slot_size = slot_size;
  f->hdr.boot_slot = SIM_FLASH_NO_SLOT;
  f->hdr.running_slot = SIM_FLASH_NO_SLOT;
  f->hdr.wifi = 1;
  /* sparse: the slots cost nothing until written */
  if (ftruncate(f->fd, (off_t)(SIM_FLASH_HEADER_SIZE + 2 * slot_size)) != 0) return EF_ERR_IO;
  return sim_flash_save(f, true);
}

ef_err sim_flash_open(sim_flash *f, const char *path, uint64_t slot_size, bool lock) {
  ef_err err = EF_OK;
  struct stat st;
  f->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (f->fd < 0) {
    ef_error("%s: %s", path, strerror(errno));
    return EF_ERR_IO;
  }
  if (lock && flock(f->fd, LOCK_EX | LOCK_NB) != 0) {
    ef_error("%s: another simulator uses this flash file", path);
    err = EF_ERR_CONFIG;
    goto out;
  }
  if (fstat(f->fd, &st) != 0) {
    err = EF_ERR_IO;
    goto out;
  }
  if (st.st_size == 0) {
    err = create_layout(f, slot_size);
    if (err != EF_OK) ef_error("%s: cannot create the flash file: %s", path, strerror(errno));
    goto out;
  }
  err = load_header(f, path);
  if (err == EF_OK && f->hdr.slot_size != slot_size)
    ef_warn("%s: keeps its slot size %llu (ignoring %llu)", path, (unsigned long long)f->hdr.slot_size,
            (unsigned long long)slot_size);
out:
  if (err != EF_OK) sim_flash_close(f);
  return err;
}

ef_err sim_flash_open_ro(sim_flash *f, const char *path) {
  ef_err err;
  f->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (f->fd < 0) {
    ef_error("%s: %s", path, strerror(errno));
    return EF_ERR_IO;
  }
  err = load_header(f, path);
  if (err != EF_OK) sim_flash_close(f);
  return err;
}

ef_err sim_flash_save(sim_flash *f, bool durable) {
  if (durable && fdatasync(f->fd) != 0) return EF_ERR_IO;
  ef_err err = pwrite_all(f->fd, &f->hdr, sizeof f->hdr, 0);
  if (err == EF_OK && durable && fdatasync(f->fd) != 0) err = EF_ERR_IO;
  return err;
}

void sim_flash_close(sim_flash *f) {
  if (f->fd >= 0) close(f->fd);
  f->fd = -1;
}

ef_err sim_flash_erase(sim_flash *f, unsigned slot) {
  static const uint8_t zeros[65536];
  uint64_t off = slot_offset(f, slot);
  memset(&f->hdr.slots[slot], 0, sizeof f->hdr.slots[slot]);
  f->hdr.slots[slot].state = SIM_SLOT_EMPTY;
  if (fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)f->hdr.slot_size) == 0)
    return EF_OK;
  /* no hole punching here (e.g. some tmpfs versions): zero the slot instead */
  for (uint64_t done = 0; done < f->hdr.slot_size;) {
    size_t n = sizeof zeros;
    if (f->hdr.slot_size - done < n) n = (size_t)(f->hdr.slot_size - done);
    ef_err err = pwrite_all(f->fd, zeros, n, off + done);
    if (err != EF_OK) return err;
    done += n;
  }
  return EF_OK;
}

ef_err sim_flash_write(sim_flash *f, unsigned slot, uint64_t offset, const uint8_t *data, size_t len) {
  return pwrite_all(f->fd, data, len, slot_offset(f, slot) + offset);
}

ef_err sim_flash_read(sim_flash *f, unsigned slot, uint64_t offset, uint8_t *data, size_t len) {
  return pread_all(f->fd, data, len, slot_offset(f, slot) + offset);
}

int sim_flash_running_slot(const sim_flash *f) {
  uint32_t b = f->hdr.running_slot;
  if (b > 1 || f->hdr.slots[b].state != SIM_SLOT_VALID) return -1;
  return (int)b;
}

const char *sim_slot_state_name(uint32_t state) {
  switch (state) {
  case SIM_SLOT_EMPTY: return "empty";
  case SIM_SLOT_WRITING: return "writing";
  case SIM_SLOT_VALID: return "valid";
  case SIM_SLOT_REJECTED: return "rejected";
  case SIM_SLOT_BOOT_FAILED: return "boot_failed";
  default: return "unknown";
  }
}
