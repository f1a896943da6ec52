/*
 * iot-gateway Mosquitto plugin: stamps every incoming PUBLISH with the broker's receive time.
 *
 * Plugin API v5 (Mosquitto 2.0). On MOSQ_EVT_MESSAGE it adds an MQTT v5 user property
 * (default name "timestamp") whose value is the broker's CLOCK_REALTIME at the moment the
 * PUBLISH is processed, as epoch milliseconds ("1795256130123") or RFC 3339 UTC with
 * milliseconds ("2026-11-21T10:15:30.123Z"). The gateway uses it as the reference time for
 * clock-skew correction (design.md, "Clock skew"); see MOSQUITTO_PLUGIN.md for operators.
 *
 * Options (mosquitto.conf, after the `plugin` line):
 *   plugin_opt_property <name>         user property name, default "timestamp"
 *   plugin_opt_format epoch_ms|rfc3339 default "epoch_ms"
 * Unknown or repeated options and bad values fail initialisation, so the broker refuses to
 * start rather than run with a stamp the gateway does not expect.
 *
 * A property with the configured name that is already on the message (a client trying to
 * forge the reference, or a message arriving over a bridge) is removed and replaced: the
 * gateway trusts this stamp, so only this broker may set it. If the list cannot be rebuilt
 * (out of memory), the message is refused rather than forwarded with the forged value; if a
 * message without such a property cannot be stamped, it goes out unstamped (the gateway then
 * falls back to its own receive time) and a warning is logged.
 *
 * The broker calls all of this from its single main thread; no locking is needed.
 * All mosquitto_* symbols are resolved from the broker executable at load time; the plugin
 * must not link libmosquitto.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mqtt_protocol.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TS_LOG_PREFIX "iot_gateway_timestamp: "
#define TS_DEFAULT_PROPERTY "timestamp"
/* Longest value: RFC 3339 with a 5+ digit year is still far below this. */
#define TS_VALUE_MAX 64
/* After the first stamping failure, log only every Nth so a persistent fault cannot flood. */
#define TS_FAILURE_LOG_EVERY 1000UL

enum ts_format { TS_FORMAT_EPOCH_MS, TS_FORMAT_RFC3339 };

struct ts_state {
  mosquitto_plugin_id_t *id;
  char *property;
  enum ts_format format;
  unsigned long failures;
};

static const char *ts_format_name(enum ts_format f) {
  return f == TS_FORMAT_RFC3339 ? "rfc3339" : "epoch_ms";
}

/* Writes the stamp for `now` into buf. Returns 0, or -1 if it does not fit / cannot convert. */
static int ts_format_value(enum ts_format format, const struct timespec *now, char *buf,
                           size_t len) {
  long ms = now->tv_nsec / 1000000L;
  if (format == TS_FORMAT_EPOCH_MS) {
    int64_t epoch_ms = (int64_t)now->tv_sec * 1000 + ms;
    int n = snprintf(buf, len, "%" PRId64, epoch_ms);
    return (n < 0 || (size_t)n >= len) ? -1 : 0;
  }
  struct tm tm;
  if (gmtime_r(&now->tv_sec, &tm) == NULL) return -1;
  size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
  if (n == 0) return -1;
  int m = snprintf(buf + n, len - n, ".%03ldZ", ms);
  return (m < 0 || (size_t)m >= len - n) ? -1 : 0;
}

/* 1 if `props` holds a user property called `name`, 0 if not, -1 if a read failed. */
static int ts_has_property(const mosquitto_property *props, const char *name) {
  for (const mosquitto_property *p = props; p != NULL; p = mosquitto_property_next(p)) {
    if (mosquitto_property_identifier(p) != MQTT_PROP_USER_PROPERTY) continue;
    char *key = NULL;
    char *value = NULL;
    if (mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &key, &value, false) ==
            NULL ||
        key == NULL) {
      mosquitto_free(key);
      mosquitto_free(value);
      return -1;
    }
    bool match = strcmp(key, name) == 0;
    mosquitto_free(key);
    mosquitto_free(value);
    if (match) return 1;
  }
  return 0;
}

/* Appends a copy of the single property `p` (not a user property) to *out. */
static int ts_copy_one(const mosquitto_property *p, mosquitto_property **out) {
  int id = mosquitto_property_identifier(p);
  const char *pname = mosquitto_property_identifier_to_string(id);
  int check_id = 0;
  int type = 0;
  if (pname == NULL ||
      mosquitto_string_to_property_info(pname, &check_id, &type) != MOSQ_ERR_SUCCESS ||
      check_id != id) {
    return MOSQ_ERR_INVAL;
  }
  switch (type) {
    case MQTT_PROP_TYPE_BYTE: {
      uint8_t v;
      if (mosquitto_property_read_byte(p, id, &v, false) == NULL) return MOSQ_ERR_INVAL;
      return mosquitto_property_add_byte(out, id, v);
    }
    case MQTT_PROP_TYPE_INT16: {
      uint16_t v;
      if (mosquitto_property_read_int16(p, id, &v, false) == NULL) return MOSQ_ERR_INVAL;
      return mosquitto_property_add_int16(out, id, v);
    }
    case MQTT_PROP_TYPE_INT32: {
      uint32_t v;
      if (mosquitto_property_read_int32(p, id, &v, false) == NULL) return MOSQ_ERR_INVAL;
      return mosquitto_property_add_int32(out, id, v);
    }
    case MQTT_PROP_TYPE_VARINT: {
      uint32_t v;
      if (mosquitto_property_read_varint(p, id, &v, false) == NULL) return MOSQ_ERR_INVAL;
      return mosquitto_property_add_varint(out, id, v);
    }
    case MQTT_PROP_TYPE_BINARY: {
      void *v = NULL;
      uint16_t len = 0;
      if (mosquitto_property_read_binary(p, id, &v, &len, false) == NULL) {
        mosquitto_free(v);
        return MOSQ_ERR_NOMEM;
      }
      int rc = mosquitto_property_add_binary(out, id, v, len);
      mosquitto_free(v);
      return rc;
    }
    case MQTT_PROP_TYPE_STRING: {
      char *v = NULL;
      if (mosquitto_property_read_string(p, id, &v, false) == NULL) {
        mosquitto_free(v);
        return MOSQ_ERR_NOMEM;
      }
      int rc = mosquitto_property_add_string(out, id, v);
      mosquitto_free(v);
      return rc;
    }
    default:
      return MOSQ_ERR_INVAL;
  }
}

/*
 * Builds in *out a copy of `src` without any user property called `name`, in the original
 * order (MQTT 5 requires user property order to be kept). On error *out is left NULL.
 */
static int ts_copy_without(const mosquitto_property *src, const char *name,
                           mosquitto_property **out, unsigned *removed) {
  *out = NULL;
  *removed = 0;
  for (const mosquitto_property *p = src; p != NULL; p = mosquitto_property_next(p)) {
    int rc;
    if (mosquitto_property_identifier(p) == MQTT_PROP_USER_PROPERTY) {
      char *key = NULL;
      char *value = NULL;
      if (mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &key, &value, false) ==
              NULL ||
          key == NULL || value == NULL) {
        rc = MOSQ_ERR_NOMEM;
      } else if (strcmp(key, name) == 0) {
        ++*removed;
        rc = MOSQ_ERR_SUCCESS;
      } else {
        rc = mosquitto_property_add_string_pair(out, MQTT_PROP_USER_PROPERTY, key, value);
      }
      mosquitto_free(key);
      mosquitto_free(value);
    } else {
      rc = ts_copy_one(p, out);
    }
    if (rc != MOSQ_ERR_SUCCESS) {
      mosquitto_property_free_all(out);
      *out = NULL;
      return rc;
    }
  }
  return MOSQ_ERR_SUCCESS;
}

static void ts_log_failure(struct ts_state *st, int level, const char *what, const char *topic,
                           int rc) {
  if (st->failures++ % TS_FAILURE_LOG_EVERY != 0) return;
  mosquitto_log_printf(level, TS_LOG_PREFIX "%s (topic '%s', rc %d: %s; %lu failure(s) so far)",
                       what, topic ? topic : "", rc, mosquitto_strerror(rc), st->failures);
}

static int ts_on_message(int event, void *event_data, void *userdata) {
  struct mosquitto_evt_message *ed = event_data;
  struct ts_state *st = userdata;
  (void)event;

  /* Take the time first: it is the receive time we promise. */
  struct timespec now;
  char value[TS_VALUE_MAX];
  if (clock_gettime(CLOCK_REALTIME, &now) != 0 ||
      ts_format_value(st->format, &now, value, sizeof value) != 0) {
    ts_log_failure(st, MOSQ_LOG_ERR, "cannot read or format CLOCK_REALTIME", ed->topic,
                   MOSQ_ERR_UNKNOWN);
    /* No stamp of ours, but a client-supplied one must still not pass: strip it below. */
    value[0] = '\0';
  }

  int present = ed->properties == NULL ? 0 : ts_has_property(ed->properties, st->property);
  if (present == 0) {
    if (value[0] == '\0') return MOSQ_ERR_SUCCESS;
    int rc = mosquitto_property_add_string_pair(&ed->properties, MQTT_PROP_USER_PROPERTY,
                                                st->property, value);
    if (rc != MOSQ_ERR_SUCCESS) {
      /* The list is unchanged on failure; the gateway falls back to its own receive time. */
      ts_log_failure(st, MOSQ_LOG_WARNING, "cannot add the stamp, message forwarded unstamped",
                     ed->topic, rc);
    }
    return MOSQ_ERR_SUCCESS;
  }

  /* present == 1 (or unknown): rebuild without the foreign stamp, then append ours. */
  mosquitto_property *rebuilt = NULL;
  unsigned removed = 0;
  int rc = ts_copy_without(ed->properties, st->property, &rebuilt, &removed);
  if (rc == MOSQ_ERR_SUCCESS && value[0] != '\0') {
    rc = mosquitto_property_add_string_pair(&rebuilt, MQTT_PROP_USER_PROPERTY, st->property, value);
  }
  if (rc != MOSQ_ERR_SUCCESS) {
    mosquitto_property_free_all(&rebuilt);
    /* Refusing makes the broker drop the PUBLISH and disconnect the client (QoS>0 is resent
     * on reconnect); forwarding would hand the gateway a stamp it must not trust. */
    ts_log_failure(st, MOSQ_LOG_ERR, "cannot replace a client-supplied stamp, message refused",
                   ed->topic, rc);
    return rc;
  }
  mosquitto_property_free_all(&ed->properties);
  ed->properties = rebuilt;
  return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions) {
  for (int i = 0; i < supported_version_count; i++) {
    if (supported_versions[i] == 5) return 5;
  }
  return -1;
}

static void ts_free_state(struct ts_state *st) {
  if (st == NULL) return;
  free(st->property);
  free(st);
}

/* Fills st from the plugin_opt_* lines. Returns 0, or logs the reason and returns -1. */
static int ts_parse_options(struct ts_state *st, const struct mosquitto_opt *options,
                            int option_count) {
  const char *property = NULL;
  const char *format = NULL;
  for (int i = 0; i < option_count; i++) {
    const char *key = options[i].key ? options[i].key : "";
    const char *value = options[i].value ? options[i].value : "";
    const char **slot;
    if (strcmp(key, "property") == 0) {
      slot = &property;
    } else if (strcmp(key, "format") == 0) {
      slot = &format;
    } else {
      mosquitto_log_printf(MOSQ_LOG_ERR,
                           TS_LOG_PREFIX "unknown option plugin_opt_%s (known: property, format)",
                           key);
      return -1;
    }
    if (*slot != NULL) {
      mosquitto_log_printf(MOSQ_LOG_ERR, TS_LOG_PREFIX "plugin_opt_%s is given more than once",
                           key);
      return -1;
    }
    *slot = value;
  }

  if (format == NULL || strcmp(format, "epoch_ms") == 0) {
    st->format = TS_FORMAT_EPOCH_MS;
  } else if (strcmp(format, "rfc3339") == 0) {
    st->format = TS_FORMAT_RFC3339;
  } else {
    mosquitto_log_printf(MOSQ_LOG_ERR,
                         TS_LOG_PREFIX
                         "invalid plugin_opt_format '%s' (expected epoch_ms or "
                         "rfc3339)",
                         format);
    return -1;
  }

  if (property == NULL) property = TS_DEFAULT_PROPERTY;
  size_t property_len = strlen(property);
  if (property_len == 0 || property_len > 65535 ||
      mosquitto_validate_utf8(property, (int)property_len) != MOSQ_ERR_SUCCESS) {
    mosquitto_log_printf(MOSQ_LOG_ERR,
                         TS_LOG_PREFIX
                         "invalid plugin_opt_property '%s' (must be a non-empty "
                         "UTF-8 string of at most 65535 bytes)",
                         property);
    return -1;
  }
  st->property = strdup(property);
  if (st->property == NULL) {
    mosquitto_log_printf(MOSQ_LOG_ERR, TS_LOG_PREFIX "out of memory");
    return -1;
  }
  return 0;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
                          struct mosquitto_opt *options, int option_count) {
  struct ts_state *st = calloc(1, sizeof *st);
  if (st == NULL) {
    mosquitto_log_printf(MOSQ_LOG_ERR, TS_LOG_PREFIX "out of memory");
    return MOSQ_ERR_NOMEM;
  }
  st->id = identifier;
  if (ts_parse_options(st, options, option_count) != 0) {
    ts_free_state(st);
    return MOSQ_ERR_INVAL;
  }

  /* Check once that the clock and the formatter work, so a broken setup fails at start. */
  struct timespec now;
  char value[TS_VALUE_MAX];
  if (clock_gettime(CLOCK_REALTIME, &now) != 0 ||
      ts_format_value(st->format, &now, value, sizeof value) != 0) {
    mosquitto_log_printf(MOSQ_LOG_ERR, TS_LOG_PREFIX "cannot read or format CLOCK_REALTIME");
    ts_free_state(st);
    return MOSQ_ERR_UNKNOWN;
  }

  int rc = mosquitto_callback_register(identifier, MOSQ_EVT_MESSAGE, ts_on_message, NULL, st);
  if (rc != MOSQ_ERR_SUCCESS) {
    mosquitto_log_printf(MOSQ_LOG_ERR,
                         TS_LOG_PREFIX "cannot register the message callback (rc %d: %s)%s", rc,
                         mosquitto_strerror(rc),
                         rc == MOSQ_ERR_ALREADY_EXISTS ? "; is the plugin loaded twice?" : "");
    ts_free_state(st);
    return rc;
  }
  *userdata = st;
  mosquitto_log_printf(MOSQ_LOG_INFO,
                       TS_LOG_PREFIX
                       "stamping every PUBLISH with user property '%s' (%s), "
                       "e.g. %s",
                       st->property, ts_format_name(st->format), value);
  return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count) {
  struct ts_state *st = userdata;
  (void)options;
  (void)option_count;
  if (st == NULL) return MOSQ_ERR_SUCCESS;
  int rc = mosquitto_callback_unregister(st->id, MOSQ_EVT_MESSAGE, ts_on_message, NULL);
  if (rc != MOSQ_ERR_SUCCESS) {
    mosquitto_log_printf(MOSQ_LOG_WARNING,
                         TS_LOG_PREFIX "cannot unregister the message callback (rc %d: %s)", rc,
                         mosquitto_strerror(rc));
  }
  ts_free_state(st);
  return MOSQ_ERR_SUCCESS;
}
