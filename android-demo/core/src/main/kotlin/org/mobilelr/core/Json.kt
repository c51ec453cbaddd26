package org.mobilelr.core

import org.json.JSONArray
import org.json.JSONObject
import org.json.JSONTokener

/**
 * JSON as plain Kotlin values, the way Python's `json` module sees it.
 *
 * Validation must tell an integer from a float (Python's `check_int` and the
 * multistep "fractions" rule depend on it) and must be able to hold NaN (a
 * golden vector's refused spec may contain one), which `org.json` objects
 * cannot. So documents are converted once into a tree of
 * [LinkedHashMap] (key order kept, as Python's dict), [ArrayList], [Long]
 * (JSON integers), [Double] (JSON numbers with a fraction or exponent),
 * [String], [Boolean] and `null`; everything downstream works on that tree.
 * `org.json` is Android's own implementation (built into the platform; on the
 * JVM it comes from Debian's `libandroid-json-java`).
 */
object Json {
    /** Parse a JSON document (object, array or scalar) into a plain tree. */
    fun parse(text: String): Any? {
        val tokener = JSONTokener(text)
        val value = try {
            tokener.nextValue()
        } catch (e: org.json.JSONException) {
            throw ValidationError("<file>", "not valid JSON (${e.message})", "a JSON document")
        }
        return fromOrgJson(value)
    }

    /** Parse a document that must be an object. */
    fun parseObject(text: String, path: String = ""): Map<String, Any?> =
        getObject(parse(text), path)

    /** Convert `org.json` values (as returned by `JSONObject.get`) into the plain tree. */
    fun fromOrgJson(value: Any?): Any? = when (value) {
        null -> null
        JSONObject.NULL -> null
        is JSONObject -> {
            val out = LinkedHashMap<String, Any?>()
            val keys = value.keys()
            while (keys.hasNext()) {
                val k = keys.next()
                out[k] = fromOrgJson(value.get(k))
            }
            out
        }
        is JSONArray -> {
            val out = ArrayList<Any?>(value.length())
            for (i in 0 until value.length()) out.add(fromOrgJson(value.get(i)))
            out
        }
        is Int -> value.toLong()
        is Long -> value
        is Short -> value.toLong()
        is Byte -> value.toLong()
        is Float -> value.toDouble()
        is Double -> value
        is Number -> value.toDouble()
        is String -> value
        is Boolean -> value
        else -> throw ValidationError("<file>", "unexpected JSON value of type ${value.javaClass.name}")
    }

    /**
     * Serialise a plain tree. Doubles are written so that they read back to the same
     * double (Kotlin's shortest round-trip form); integers without a fraction.
     * NaN and infinities are not JSON and are refused.
     */
    fun write(value: Any?, indent: Int = 0): String {
        val sb = StringBuilder()
        writeTo(sb, value, indent, 0)
        return sb.toString()
    }

    private fun newline(sb: StringBuilder, indent: Int, level: Int) {
        if (indent <= 0) return
        sb.append('\n')
        for (i in 0 until indent * level) sb.append(' ')
    }

    private fun writeTo(sb: StringBuilder, value: Any?, indent: Int, level: Int) {
        when (value) {
            null -> sb.append("null")
            is Boolean -> sb.append(if (value) "true" else "false")
            is Int, is Long, is Short, is Byte -> sb.append(value.toString())
            is Double -> sb.append(number(value))
            is Float -> sb.append(number(value.toDouble()))
            is Number -> sb.append(number(value.toDouble()))
            is String -> quote(sb, value)
            is Map<*, *> -> {
                sb.append('{')
                var first = true
                for ((k, v) in value) {
                    if (!first) sb.append(',')
                    first = false
                    newline(sb, indent, level + 1)
                    quote(sb, k.toString())
                    sb.append(if (indent > 0) ": " else ":")
                    writeTo(sb, v, indent, level + 1)
                }
                if (!first) newline(sb, indent, level)
                sb.append('}')
            }
            is Iterable<*> -> {
                sb.append('[')
                var first = true
                for (v in value) {
                    if (!first) sb.append(',')
                    first = false
                    newline(sb, indent, level + 1)
                    writeTo(sb, v, indent, level + 1)
                }
                if (!first) newline(sb, indent, level)
                sb.append(']')
            }
            is DoubleArray -> writeTo(sb, value.toList(), indent, level)
            is IntArray -> writeTo(sb, value.toList(), indent, level)
            is LongArray -> writeTo(sb, value.toList(), indent, level)
            is Array<*> -> writeTo(sb, value.toList(), indent, level)
            else -> throw IllegalArgumentException("cannot write ${value.javaClass.name} as JSON")
        }
    }

    private fun number(x: Double): String {
        if (x.isNaN() || x.isInfinite()) throw IllegalArgumentException("$x is not a JSON number")
        return x.toString()  // e.g. 0.1, 1.0E-5: valid JSON, reads back to the same double
    }

    private fun quote(sb: StringBuilder, s: String) {
        sb.append('"')
        for (ch in s) {
            when (ch) {
                '"' -> sb.append("\\\"")
                '\\' -> sb.append("\\\\")
                '\n' -> sb.append("\\n")
                '\r' -> sb.append("\\r")
                '\t' -> sb.append("\\t")
                '\b' -> sb.append("\\b")
                '\u000C' -> sb.append("\\f")
                else -> if (ch < ' ') {
                    sb.append("\\u")
                    val hex = Integer.toHexString(ch - '\u0000')
                    for (i in hex.length until 4) sb.append('0')
                    sb.append(hex)
                } else sb.append(ch)
            }
        }
        sb.append('"')
    }

    /** A deep copy of a plain tree (maps keep their key order). */
    fun copy(value: Any?): Any? = when (value) {
        is Map<*, *> -> {
            val out = LinkedHashMap<String, Any?>()
            for ((k, v) in value) out[k.toString()] = copy(v)
            out
        }
        is List<*> -> {
            val out = ArrayList<Any?>(value.size)
            for (v in value) out.add(copy(v))
            out
        }
        else -> value
    }
}
