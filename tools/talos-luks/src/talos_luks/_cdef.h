/* The libcryptsetup API used by talos-luks, and nothing more (parsed by cffi's cdef).
 * Names and layouts follow <libcryptsetup.h> of libcryptsetup 2.3.4 or later; the builder
 * compiles them against the installed header, so a mismatch fails the build, not a run. */

struct crypt_device;
struct crypt_params_integrity;

struct crypt_pbkdf_type {
    const char *type;
    const char *hash;
    uint32_t time_ms;
    uint32_t iterations;
    uint32_t max_memory_kb;
    uint32_t parallel_threads;
    uint32_t flags;
};

struct crypt_params_luks2 {
    const struct crypt_pbkdf_type *pbkdf;
    const char *integrity;
    const struct crypt_params_integrity *integrity_params;
    size_t data_alignment;
    const char *data_device;
    uint32_t sector_size;
    const char *label;
    const char *subsystem;
};

struct crypt_active_device {
    uint64_t offset;
    uint64_t iv_offset;
    uint64_t size;
    uint32_t flags;
};

typedef enum {
    CRYPT_INVALID,
    CRYPT_INACTIVE,
    CRYPT_ACTIVE,
    CRYPT_BUSY
} crypt_status_info;

typedef enum {
    CRYPT_SLOT_INVALID,
    CRYPT_SLOT_INACTIVE,
    CRYPT_SLOT_ACTIVE,
    CRYPT_SLOT_ACTIVE_LAST,
    CRYPT_SLOT_UNBOUND
} crypt_keyslot_info;

typedef enum {
    CRYPT_TOKEN_INVALID,
    CRYPT_TOKEN_INACTIVE,
    CRYPT_TOKEN_INTERNAL,
    CRYPT_TOKEN_INTERNAL_UNKNOWN,
    CRYPT_TOKEN_EXTERNAL,
    CRYPT_TOKEN_EXTERNAL_UNKNOWN
} crypt_token_info;

#define CRYPT_LOG_NORMAL ...
#define CRYPT_LOG_ERROR ...
#define CRYPT_LOG_VERBOSE ...
#define CRYPT_LOG_DEBUG ...
#define CRYPT_DEBUG_ALL ...
#define CRYPT_DEBUG_NONE ...
#define CRYPT_ANY_SLOT ...
#define CRYPT_ANY_TOKEN ...
#define CRYPT_PBKDF_NO_BENCHMARK ...
#define CRYPT_ACTIVATE_READONLY ...
#define CRYPT_ACTIVATE_ALLOW_DISCARDS ...
#define CRYPT_ACTIVATE_SAME_CPU_CRYPT ...
#define CRYPT_ACTIVATE_NO_READ_WORKQUEUE ...
#define CRYPT_ACTIVATE_NO_WRITE_WORKQUEUE ...

/* Log messages from the library reach Python through this callback (binding.py). */
extern "Python" void _talos_luks_log(int level, const char *msg, void *usrptr);
void crypt_set_log_callback(struct crypt_device *cd,
                            void (*log)(int level, const char *msg, void *usrptr),
                            void *usrptr);
void crypt_set_debug_level(int level);

int crypt_init(struct crypt_device **cd, const char *device);
int crypt_init_by_name(struct crypt_device **cd, const char *name);
void crypt_free(struct crypt_device *cd);

int crypt_load(struct crypt_device *cd, const char *requested_type, void *params);
int crypt_format(struct crypt_device *cd, const char *type, const char *cipher,
                 const char *cipher_mode, const char *uuid, const char *volume_key,
                 size_t volume_key_size, void *params);
int crypt_set_pbkdf_type(struct crypt_device *cd, const struct crypt_pbkdf_type *pbkdf);

int crypt_keyslot_add_by_volume_key(struct crypt_device *cd, int keyslot,
                                    const char *volume_key, size_t volume_key_size,
                                    const char *passphrase, size_t passphrase_size);
int crypt_keyslot_add_by_passphrase(struct crypt_device *cd, int keyslot,
                                    const char *passphrase, size_t passphrase_size,
                                    const char *new_passphrase, size_t new_passphrase_size);
int crypt_keyslot_destroy(struct crypt_device *cd, int keyslot);
crypt_keyslot_info crypt_keyslot_status(struct crypt_device *cd, int keyslot);
int crypt_keyslot_max(const char *type);
int crypt_keyslot_get_key_size(struct crypt_device *cd, int keyslot);
int crypt_keyslot_get_pbkdf(struct crypt_device *cd, int keyslot, struct crypt_pbkdf_type *pbkdf);

int crypt_activate_by_passphrase(struct crypt_device *cd, const char *name, int keyslot,
                                 const char *passphrase, size_t passphrase_size,
                                 uint32_t flags);
int crypt_deactivate(struct crypt_device *cd, const char *name);
crypt_status_info crypt_status(struct crypt_device *cd, const char *name);
int crypt_get_active_device(struct crypt_device *cd, const char *name,
                            struct crypt_active_device *cad);

const char *crypt_get_type(struct crypt_device *cd);
const char *crypt_get_cipher(struct crypt_device *cd);
const char *crypt_get_cipher_mode(struct crypt_device *cd);
const char *crypt_get_uuid(struct crypt_device *cd);
const char *crypt_get_device_name(struct crypt_device *cd);
int crypt_get_volume_key_size(struct crypt_device *cd);
int crypt_get_sector_size(struct crypt_device *cd);
uint64_t crypt_get_data_offset(struct crypt_device *cd);

crypt_token_info crypt_token_status(struct crypt_device *cd, int token, const char **type);
int crypt_token_json_get(struct crypt_device *cd, int token, const char **json);
int crypt_token_json_set(struct crypt_device *cd, int token, const char *json);
