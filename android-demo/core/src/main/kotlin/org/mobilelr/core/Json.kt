package org.mobilelr.core

/**
 * JSON as plain Kotlin values, read as strictly as `mobile_lr.validation.parse_json` reads it.
 *
 * Validation must tell an integer from a float (Python's `check_int` and the multistep
 * "fractions" rule depend on it) and must be able to hold NaN (Python's `json` reads the
 * `NaN`/`Infinity` literals; every numeric field refuses non-finite values itself). So documents
 * are parsed once into a tree of [LinkedHashMap] (key order kept, as Python's dict), [ArrayList],
 * [Long] (JSON integers), [Double] (JSON numbers with a fraction or exponent), [String], [Boolean]
 * and `null`; everything downstream works on that tree.
 *
 * The parser is this file's own, not `org.json`: Android's `JSONTokener` accepts comments, single
 * quotes, unquoted strings and `010` as 8, which the Python reader refuses. Like the Python
 * reader this one refuses duplicate keys (a second value would silently win), nesting deeper than
 * [MAX_DEPTH], integers outside [Long], raw control characters in strings, a byte-order mark, and
 * anything after the document; the golden vectors' `json_texts` check both verdicts agree.
 */
object Json {
    /** Containers nested at most this deep (Python's `validation.MAX_DEPTH`). */
    const val MAX_DEPTH = 64

    /** Parse a JSON document (object, array or scalar) into a plain tree. */
    fun parse(text: String): Any? = Parser(text).document()

    /** Parse a document that must be an object. */
    fun parseObject(text: String, path: String = ""): Map<String, Any?> =
        getObject(parse(text), path)

    private class Parser(private val s: String) {
        private var i = 0

        private fun fail(problem: String): Nothing {
            val line = 1 + s.substring(0, minOf(i, s.length)).count { it == '\n' }
            throw ValidationError("<file>", "not valid JSON ($problem at line $line)", "a JSON document")
        }

        fun document(): Any? {
            skip()
            val value = value(1)
            skip()
            if (i != s.length) fail("extra data")
            return value
        }

        private fun skip() {
            while (i < s.length && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++
        }

        private fun literal(word: String): Boolean {
            if (!s.startsWith(word, i)) return false
            i += word.length
            return true
        }

        private fun value(depth: Int): Any? {
            if (i >= s.length) fail("expecting a value")
            return when (s[i]) {
                '{' -> obj(depth)
                '[' -> array(depth)
                '"' -> string()
                else -> when {
                    literal("true") -> true
                    literal("false") -> false
                    literal("null") -> null
                    literal("NaN") -> Double.NaN
                    literal("Infinity") -> Double.POSITIVE_INFINITY
                    literal("-Infinity") -> Double.NEGATIVE_INFINITY
                    else -> number()
                }
            }
        }

        private fun enter(depth: Int) {
            if (depth > MAX_DEPTH) {
                throw ValidationError("<file>", "JSON nested deeper than $MAX_DEPTH levels", "at most $MAX_DEPTH levels")
            }
            i++
            skip()
        }

        private fun obj(depth: Int): Map<String, Any?> {
            enter(depth)
            val out = LinkedHashMap<String, Any?>()
            if (i < s.length && s[i] == '}') { i++; return out }
            while (true) {
                if (i >= s.length || s[i] != '"') fail("expecting a property name in double quotes")
                val key = string()
                skip()
                if (i >= s.length || s[i] != ':') fail("expecting ':'")
                i++
                skip()
                val v = value(depth + 1)
                if (out.containsKey(key)) {
                    throw ValidationError("<file>", "duplicate key ${pyRepr(key.take(80))} in a JSON object", "each key once")
                }
                out[key] = v
                skip()
                if (i < s.length && s[i] == ',') { i++; skip(); continue }
                if (i < s.length && s[i] == '}') { i++; return out }
                fail("expecting ',' or '}'")
            }
        }

        private fun array(depth: Int): List<Any?> {
            enter(depth)
            val out = ArrayList<Any?>()
            if (i < s.length && s[i] == ']') { i++; return out }
            while (true) {
                out.add(value(depth + 1))
                skip()
                if (i < s.length && s[i] == ',') { i++; skip(); continue }
                if (i < s.length && s[i] == ']') { i++; return out }
                fail("expecting ',' or ']'")
            }
        }

        private fun string(): String {
            i++  // the opening quote
            val sb = StringBuilder()
            while (true) {
                if (i >= s.length) fail("unterminated string")
                val c = s[i++]
                when {
                    c == '"' -> return sb.toString()
                    c < ' ' -> fail("invalid control character in a string")
                    c != '\\' -> sb.append(c)
                    i >= s.length -> fail("unterminated string")
                    else -> when (val e = s[i++]) {
                        '"' -> sb.append('"')
                        '\\' -> sb.append('\\')
                        '/' -> sb.append('/')
                        'b' -> sb.append('\b')
                        'f' -> sb.append('\u000C')
                        'n' -> sb.append('\n')
                        'r' -> sb.append('\r')
                        't' -> sb.append('\t')
                        'u' -> {
                            if (i + 4 > s.length) fail("invalid \\uXXXX escape")
                            val hex = s.substring(i, i + 4)
                            if (!hex.all { it in '0'..'9' || it in 'a'..'f' || it in 'A'..'F' }) fail("invalid \\uXXXX escape")
                            sb.append(hex.toInt(16).toChar())
                            i += 4
                        }
                        else -> fail("invalid escape \\$e")
                    }
                }
            }
        }

        /** `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`: a [Long] without fraction or exponent. */
        private fun number(): Any {
            val start = i
            if (i < s.length && s[i] == '-') i++
            val intStart = i
            if (i < s.length && s[i] == '0') i++ else {
                if (i >= s.length || s[i] !in '1'..'9') { i = start; fail("expecting a value") }
                while (i < s.length && s[i] in '0'..'9') i++
            }
            val digits = i - intStart
            var integer = true
            if (i + 1 < s.length && s[i] == '.' && s[i + 1] in '0'..'9') {
                integer = false
                i++
                while (i < s.length && s[i] in '0'..'9') i++
            }
            if (i < s.length && (s[i] == 'e' || s[i] == 'E')) {
                var j = i + 1
                if (j < s.length && (s[j] == '+' || s[j] == '-')) j++
                if (j < s.length && s[j] in '0'..'9') {
                    integer = false
                    i = j
                    while (i < s.length && s[i] in '0'..'9') i++
                }
            }
            val text = s.substring(start, i)
            if (!integer) return text.toDouble()
            return text.toLongOrNull() ?: throw ValidationError("<file>",
                "integer of $digits digits is outside the 64-bit range", "integers in [-2**63, 2**63 - 1]")
        }
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
