package org.mobilelr.core

/**
 * Field-level validation, the Kotlin twin of `mobile_lr/validation/__init__.py`.
 *
 * A bad spec, profile, policy or bundle is refused with an error that names the
 * field as a dotted path (`shape.milestones[2]`), exactly as the Python side does:
 * the golden vectors check that both sides name the same field. Values are the
 * plain JSON tree of [Json]: integers are [Long], other numbers [Double].
 */
open class ValidationError(
    val field: String,
    val problem: String,
    val allowed: String? = null
) : IllegalArgumentException(if (allowed.isNullOrEmpty()) "$field: $problem" else "$field: $problem; allowed: $allowed")

/** Extend a dotted path: `join("shape", "gamma") == "shape.gamma"`. */
fun join(path: String, key: String): String = if (path.isEmpty()) key else "$path.$key"

/** Extend a path with a list index: `join("shape.milestones", 2) == "shape.milestones[2]"`. */
fun join(path: String, index: Int): String = "$path[$index]"

/** Python's `repr` for the values that appear in messages (strings quoted, floats as floats). */
fun pyRepr(value: Any?): String = when (value) {
    null -> "None"
    is Boolean -> if (value) "True" else "False"
    is String -> "'" + value + "'"
    is Double -> pyFloat(value)
    is List<*> -> value.joinToString(", ", "[", "]") { pyRepr(it) }
    is Map<*, *> -> value.entries.joinToString(", ", "{", "}") { pyRepr(it.key) + ": " + pyRepr(it.value) }
    else -> value.toString()
}

/** A double written as Python writes it (`0.0001`, `1e-05`, `inf`, `nan`). */
fun pyFloat(x: Double): String {
    if (x.isNaN()) return "nan"
    if (x.isInfinite()) return if (x > 0) "inf" else "-inf"
    if (x == Math.floor(x) && Math.abs(x) < 1e16) {
        val asLong = x.toLong()
        return (if (x == 0.0 && 1.0 / x < 0) "-0" else asLong.toString()) + ".0"
    }
    val s = x.toString()  // Java: shortest repr, scientific outside [1e-3, 1e7)
    val e = s.indexOf('E')
    if (e < 0) return s
    val mant = s.substring(0, e).removeSuffix(".0")
    val exp = s.substring(e + 1).toInt()
    if (exp >= -4 && exp < 16) return java.math.BigDecimal(mant + "E" + exp).toPlainString()
    val sign = if (exp < 0) "-" else "+"
    val absExp = Math.abs(exp)
    return mant + "e" + sign + (if (absExp < 10) "0" else "") + absExp
}

fun getObject(value: Any?, path: String): Map<String, Any?> {
    if (value !is Map<*, *>) {
        throw ValidationError(if (path.isEmpty()) "<root>" else path,
            "expected an object, got ${pyTypeName(value)}", "a JSON object")
    }
    @Suppress("UNCHECKED_CAST")
    return value as Map<String, Any?>
}

fun pyTypeName(value: Any?): String = when (value) {
    null -> "NoneType"
    is Boolean -> "bool"
    is Long, is Int -> "int"
    is Double -> "float"
    is String -> "str"
    is List<*> -> "list"
    is Map<*, *> -> "dict"
    else -> value.javaClass.simpleName
}

/** Refuse unknown keys (a typo must not silently train with a default) and missing ones. */
fun checkKeys(obj: Map<String, Any?>, path: String, allowed: Collection<String>,
              required: Collection<String> = emptyList()) {
    for (key in obj.keys) {
        if (key !in allowed) {
            val names = allowed.sorted().joinToString(", ")
            throw ValidationError(join(path, key), "unknown field", if (names.isEmpty()) "no fields" else names)
        }
    }
    for (key in required) {
        if (key !in obj) throw ValidationError(join(path, key), "missing required field")
    }
}

private fun bound(x: Double?): String? = if (x == null) null else pyFloat(x)

private fun interval(lo: Double?, hi: Double?, loOpen: Boolean, hiOpen: Boolean): String {
    val left = if (loOpen || lo == null) "(" else "["
    val right = if (hiOpen || hi == null) ")" else "]"
    return "a finite number in $left${bound(lo) ?: "-inf"}, ${bound(hi) ?: "inf"}$right"
}

/** Whether a tree value is a JSON number (booleans are not). */
fun isNumber(value: Any?): Boolean = value is Long || value is Double || value is Int

/** A finite real within the bounds; booleans and strings are refused. */
fun checkNumber(value: Any?, field: String, lo: Double? = null, hi: Double? = null,
                loOpen: Boolean = false, hiOpen: Boolean = false): Double {
    val allowed = interval(lo, hi, loOpen, hiOpen)
    if (!isNumber(value)) throw ValidationError(field, "expected a number, got ${pyRepr(value)}", allowed)
    val x = (value as Number).toDouble()
    if (x.isNaN() || x.isInfinite()) throw ValidationError(field, "${pyRepr(value)} is not finite", allowed)
    if (lo != null && (x < lo || (loOpen && x == lo))) throw ValidationError(field, "${pyRepr(value)} is out of range", allowed)
    if (hi != null && (x > hi || (hiOpen && x == hi))) throw ValidationError(field, "${pyRepr(value)} is out of range", allowed)
    return x
}

/** `get_number` with the field required. */
fun getNumber(obj: Map<String, Any?>, key: String, path: String, lo: Double? = null, hi: Double? = null,
              loOpen: Boolean = false, hiOpen: Boolean = false): Double {
    val field = join(path, key)
    if (key !in obj) throw ValidationError(field, "missing required field")
    return checkNumber(obj[key], field, lo, hi, loOpen, hiOpen)
}

/** `get_number` with a default when the key is absent (a present `null` is refused). */
fun getNumberOr(obj: Map<String, Any?>, key: String, path: String, default: Double?, lo: Double? = null,
                hi: Double? = null, loOpen: Boolean = false, hiOpen: Boolean = false): Double? {
    if (key !in obj) return default
    return checkNumber(obj[key], join(path, key), lo, hi, loOpen, hiOpen)
}

/** An integer (a float with no fraction is accepted, as in Python) within the bounds. */
fun checkInt(value: Any?, field: String, lo: Long? = null, hi: Long? = null): Long {
    val allowed = if (lo != null) (if (hi == null) "an integer >= $lo" else "an integer in [$lo, $hi]") else "an integer"
    if (value is Boolean) throw ValidationError(field, "expected an integer, got ${pyRepr(value)}", allowed)
    val n: Long = when {
        value is Long -> value
        value is Int -> value.toLong()
        value is Double && !value.isNaN() && !value.isInfinite() && value == Math.floor(value) -> value.toLong()
        else -> throw ValidationError(field, "expected an integer, got ${pyRepr(value)}", allowed)
    }
    if ((lo != null && n < lo) || (hi != null && n > hi)) throw ValidationError(field, "$n is out of range", allowed)
    return n
}

fun getInt(obj: Map<String, Any?>, key: String, path: String, lo: Long? = null, hi: Long? = null): Long {
    val field = join(path, key)
    if (key !in obj) throw ValidationError(field, "missing required field")
    return checkInt(obj[key], field, lo, hi)
}

fun getIntOr(obj: Map<String, Any?>, key: String, path: String, default: Long?, lo: Long? = null,
             hi: Long? = null): Long? {
    if (key !in obj) return default
    return checkInt(obj[key], join(path, key), lo, hi)
}

fun checkBool(value: Any?, field: String): Boolean {
    if (value !is Boolean) throw ValidationError(field, "expected true or false, got ${pyRepr(value)}", "true, false")
    return value
}

fun getBool(obj: Map<String, Any?>, key: String, path: String): Boolean {
    val field = join(path, key)
    if (key !in obj) throw ValidationError(field, "missing required field")
    return checkBool(obj[key], field)
}

fun getBoolOr(obj: Map<String, Any?>, key: String, path: String, default: Boolean): Boolean =
    if (key !in obj) default else checkBool(obj[key], join(path, key))

fun getChoice(obj: Map<String, Any?>, key: String, path: String, choices: List<String>,
              default: String? = null): String {
    val field = join(path, key)
    if (key !in obj) {
        if (default == null) throw ValidationError(field, "missing required field", choices.joinToString(", "))
        return default
    }
    val v = obj[key]
    if (v !is String || v !in choices) throw ValidationError(field, "unknown value ${pyRepr(v)}", choices.joinToString(", "))
    return v
}
