// Tests for the TOML 1.0 reader: every feature as the exact JSON it becomes, errors with their
// line:column, toml-test style valid/invalid cases, limits, and pipelines equal to their JSON.
#include "anneal/base.h"
#include "test.h"

#include <jansson.h>

// The document as sorted compact JSON, or "ERR <message>".
static char *conv(const char *doc, size_t len) {
    anneal_err err = {0};
    json_t *v = anneal_toml_parse(doc, len, "t.toml", &err);
    if (!v) {
        size_t n = strlen(err.msg) + 5;
        char *s = malloc(n);
        if (s) snprintf(s, n, "ERR %s", err.msg);
        return s;
    }
    char *s = json_dumps(v, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(v);
    return s;
}

static void check_conv(int line, const char *doc, size_t len, const char *want, bool prefix) {
    char *got = conv(doc, len);
    bool same = got && (prefix ? strncmp(got, want, strlen(want)) == 0 : strcmp(got, want) == 0);
    if (!same) {
        fprintf(stderr, "%s:%d: [%s] TOML\n%.*s\n  gave %s\n  want %s\n", __FILE__, line,
                test_current, (int)len, doc, got ? got : "(null)", want);
        test_failures++;
    }
    free(got);
}

// OK: the JSON it must give. BAD: the error's start ("ERR t.toml:LINE:COL: message").
#define OK(doc, json) check_conv(__LINE__, doc, strlen(doc), json, false)
#define BAD(doc, msg) check_conv(__LINE__, doc, strlen(doc), "ERR t.toml:" msg, true)
#define OKN(doc, json) check_conv(__LINE__, doc, sizeof(doc) - 1, json, false)
#define BADN(doc, msg) check_conv(__LINE__, doc, sizeof(doc) - 1, "ERR t.toml:" msg, true)

static void test_comments_and_keys(void) {
    OK("", "{}");
    OK("# only a comment\n\n   \n\t# another\n", "{}");
    OK("key = \"value\" # trailing comment\n", "{\"key\":\"value\"}");
    OK("bare_key = 1\nbare-key = 2\n1234 = 3\n", "{\"1234\":3,\"bare-key\":2,\"bare_key\":1}");
    OK("\"127.0.0.1\" = 1\n\"character encoding\" = 2\n'key2' = 3\n\"\" = 4\n\"\\u00e9\" = 5\n",
       "{\"\":4,\"127.0.0.1\":1,\"character encoding\":2,\"key2\":3,\"é\":5}");
    OK("physical.color = \"orange\"\nphysical . shape = \"round\"\nsite.\"google.com\" = true\n",
       "{\"physical\":{\"color\":\"orange\",\"shape\":\"round\"},\"site\":{\"google.com\":true}}");
    OK("3.14159 = \"pi\"\n", "{\"3\":{\"14159\":\"pi\"}}");
    OK("a.b.c = 1\na.d = 2\n", "{\"a\":{\"b\":{\"c\":1},\"d\":2}}");
    OK("\xEF\xBB\xBF"
       "a = 1\n",
       "{\"a\":1}");
    OK("a = 1\r\nb = 2\r\n# c\r\n", "{\"a\":1,\"b\":2}");
    OK("  \t a\t=\t1  ", "{\"a\":1}");
}

static void test_strings(void) {
    OK("s = \"I'm a string. \\\"You can quote me\\\". Name\\tJos\\u00E9\\nLocation\\tSF.\"\n",
       "{\"s\":\"I'm a string. \\\"You can quote me\\\". Name\\tJosé\\nLocation\\tSF.\"}");
    OK("s = \"\\b\\t\\n\\f\\r\\\"\\\\\"", "{\"s\":\"\\b\\t\\n\\f\\r\\\"\\\\\"}");
    OK("s = \"\\u00e9\\U0001F600\\uFFFF\\U0010FFFF\"",
       "{\"s\":\"é😀\xef\xbf\xbf\xf4\x8f\xbf\xbf\"}");
    OK("s = \"tab\there\"", "{\"s\":\"tab\\there\"}");
    OK("s = \"\"", "{\"s\":\"\"}");
    OK("s = 'C:\\Users\\nodejs\\templates'\n", "{\"s\":\"C:\\\\Users\\\\nodejs\\\\templates\"}");
    OK("s = '<\\i\\c*\\s*>'", "{\"s\":\"<\\\\i\\\\c*\\\\s*>\"}");
    OK("s = ''", "{\"s\":\"\"}");
    // Multi-line basic: the first newline is dropped, line-ending backslashes trim.
    OK("s = \"\"\"\nRoses are red\nViolets are blue\"\"\"",
       "{\"s\":\"Roses are red\\nViolets are blue\"}");
    OK("s = \"\"\"\r\nOne\r\nTwo\"\"\"", "{\"s\":\"One\\nTwo\"}");
    OK("s = \"\"\"\nThe quick brown \\\n\n\n  fox jumps over \\\n    the lazy dog.\"\"\"",
       "{\"s\":\"The quick brown fox jumps over the lazy dog.\"}");
    OK("s = \"\"\"\\\n       The quick brown \\\n       fox.\\\n       \"\"\"",
       "{\"s\":\"The quick brown fox.\"}");
    OK("s = \"\"\"a \\  \t\n  b\"\"\"", "{\"s\":\"a b\"}");
    OK("s = \"\"\"Here are two quotation marks: \"\". Simple enough.\"\"\"",
       "{\"s\":\"Here are two quotation marks: \\\"\\\". Simple enough.\"}");
    OK("s = \"\"\"Here are three: \"\"\\\".\"\"\"", "{\"s\":\"Here are three: \\\"\\\"\\\".\"}");
    OK("s = \"\"\"\"This,\" she said, \"is just a pointless statement.\"\"\"\"",
       "{\"s\":\"\\\"This,\\\" she said, \\\"is just a pointless statement.\\\"\"}");
    OK("s = \"\"\"\"\"\"", "{\"s\":\"\"}");
    OK("s = \"\"\"x\"\"\"\"\"", "{\"s\":\"x\\\"\\\"\"}");
    // Literal and multi-line literal: no escapes at all.
    OK("s = '''I [dw]on't need \\d{2} apples'''", "{\"s\":\"I [dw]on't need \\\\d{2} apples\"}");
    OK("s = '''\nThe first newline is\ntrimmed in raw strings.\n   All other whitespace\n   is "
       "preserved.\n'''",
       "{\"s\":\"The first newline is\\ntrimmed in raw strings.\\n   All other whitespace\\n   is "
       "preserved.\\n\"}");
    OK("s = ''''That,' she said, 'is still pointless.''''",
       "{\"s\":\"'That,' she said, 'is still pointless.'\"}");
    OK("s = '''a\\\n b'''", "{\"s\":\"a\\\\\\n b\"}");
    OK("s = '''tab\there'''", "{\"s\":\"tab\\there\"}");
}

static void test_numbers(void) {
    OK("int1 = +99\nint2 = 42\nint3 = 0\nint4 = -17\nint5 = 1_000\nint6 = 5_349_221\n"
       "int7 = 53_49_221\nint8 = 1_2_3_4_5\nm = -0\np = +0\n",
       "{\"int1\":99,\"int2\":42,\"int3\":0,\"int4\":-17,\"int5\":1000,\"int6\":5349221,"
       "\"int7\":5349221,\"int8\":12345,\"m\":0,\"p\":0}");
    OK("hex1 = 0xDEADBEEF\nhex2 = 0xdeadbeef\nhex3 = 0xdead_beef\noct1 = 0o01234567\n"
       "oct2 = 0o755\nbin1 = 0b11010110\nz = 0x0\n",
       "{\"bin1\":214,\"hex1\":3735928559,\"hex2\":3735928559,\"hex3\":3735928559,"
       "\"oct1\":342391,\"oct2\":493,\"z\":0}");
    OK("max = 9223372036854775807\nmin = -9223372036854775808\nhex = 0x7FFFFFFFFFFFFFFF\n"
       "oct = 0o777777777777777777777\nbin = "
       "0b111111111111111111111111111111111111111111111111111111111111111\n",
       "{\"bin\":9223372036854775807,\"hex\":9223372036854775807,\"max\":9223372036854775807,"
       "\"min\":-9223372036854775808,\"oct\":9223372036854775807}");
    BAD("a = 9223372036854775808", "1:5: integer 9223372036854775808 does not fit in 64 bits");
    BAD("a = -9223372036854775809", "1:5: integer -9223372036854775809 does not fit in 64 bits");
    BAD("a = 0x8000000000000000", "1:5: integer 0x8000000000000000 does not fit in 64 bits");
    BAD("a = 0b1000000000000000000000000000000000000000000000000000000000000000",
        "1:5: integer 0b1");
    OK("f1 = +1.0\nf2 = 3.5\nf3 = -0.01\nf4 = 5e+22\nf5 = 1e06\nf6 = -2E-2\nf7 = 0.5\n"
       "f8 = 224_617.5\nf9 = -0.0\nf10 = +0.0\nf11 = 0e0\nf12 = 1_0.2_5e1_0\n",
       "{\"f1\":1.0,\"f10\":0.0,\"f11\":0.0,\"f12\":102500000000.0,\"f2\":3.5,\"f3\":-0.01,"
       "\"f4\":4.9999999999999996e22,\"f5\":1000000.0,\"f6\":-0.02,\"f7\":0.5,\"f8\":224617.5,"
       "\"f9\":-0.0}");
    OK("t = true\nf = false\n", "{\"f\":false,\"t\":true}");
    BAD("a = inf", "1:5: inf is not representable in JSON");
    BAD("a = +inf", "1:5: +inf is not representable in JSON");
    BAD("a = -nan", "1:5: -nan is not representable in JSON");
    BAD("a = [1, nan]", "1:9: nan is not representable in JSON");
    BAD("a = 1e400", "1:5: float 1e400 is out of range");
}

static void test_arrays_and_inline_tables(void) {
    OK("integers = [ 1, 2, 3 ]\ncolors = [ \"red\", \"yellow\", \"green\" ]\n"
       "nested_arrays_of_ints = [ [ 1, 2 ], [3, 4, 5] ]\n"
       "nested_mixed_array = [ [ 1, 2 ], [\"a\", \"b\", \"c\"] ]\n"
       "string_array = [ \"all\", 'strings', \"\"\"are the same\"\"\", '''type''' ]\n",
       "{\"colors\":[\"red\",\"yellow\",\"green\"],\"integers\":[1,2,3],"
       "\"nested_arrays_of_ints\":[[1,2],[3,4,5]],\"nested_mixed_array\":[[1,2],[\"a\",\"b\",\"c\"]"
       "],"
       "\"string_array\":[\"all\",\"strings\",\"are the same\",\"type\"]}");
    OK("numbers = [ 0.5, 1, 2, 5 ]\ncontributors = [\n  \"Foo Bar <foo@example.com>\",\n"
       "  { name = \"Baz Qux\", email = \"bazqux@example.com\", url = "
       "\"https://example.com/bazqux\" }\n]",
       "{\"contributors\":[\"Foo Bar <foo@example.com>\",{\"email\":\"bazqux@example.com\","
       "\"name\":\"Baz Qux\",\"url\":\"https://example.com/bazqux\"}],\"numbers\":[0.5,1,2,5]}");
    OK("integers2 = [\n  1, 2, 3\n]\nintegers3 = [\n  1,\n  2, # this is ok\n]\n"
       "e = []\ne2 = [ # c\n\n]\n",
       "{\"e\":[],\"e2\":[],\"integers2\":[1,2,3],\"integers3\":[1,2]}");
    OK("name = { first = \"Tom\", last = \"Preston-Werner\" }\npoint = { x = 1, y = 2 }\n"
       "animal = { type.name = \"pug\" }\nempty = {}\nnest = {a = {b = [{c = 1}]}}\n",
       "{\"animal\":{\"type\":{\"name\":\"pug\"}},\"empty\":{},\"name\":{\"first\":\"Tom\","
       "\"last\":\"Preston-Werner\"},\"nest\":{\"a\":{\"b\":[{\"c\":1}]}},\"point\":{\"x\":1,\"y\":"
       "2}}");
    OK("t = { a.b = 1, a.c = 2 }", "{\"t\":{\"a\":{\"b\":1,\"c\":2}}}");
    BAD("a = [1 2]", "1:8: expected ',' or ']' in an array, found '2'");
    BAD("a = [1,,2]", "1:8: expected a value, found ','");
    BAD("a = [", "1:6: expected a value, found end of file");
    BAD("a = {b = 1,}", "1:12: a trailing comma is not allowed in an inline table");
    BAD("a = {b = 1\n}", "1:11: an inline table must be on one line");
    BAD("a = {\nb = 1}", "1:6: expected a key, found end of line");
    BAD("a = {b = 1, b = 2}", "1:13: duplicate key 'b'");
    BAD("a = {b = {c = 1}, b.d = 2}", "1:19: cannot add keys to inline table 'b'");
    BAD("a = {b = 1}\na.c = 2", "2:1: cannot add keys to inline table 'a'");
    BAD("a = {b = 1}\n[a.c]", "2:2: cannot add tables to inline table 'a'");
    BAD("a = {b = 1}\n[a]", "2:1: table 'a' is already defined");
}

static void test_tables(void) {
    OK("[table-1]\nkey1 = \"some string\"\nkey2 = 123\n\n[table-2]\nkey1 = \"another "
       "string\"\nkey2 = 456\n",
       "{\"table-1\":{\"key1\":\"some string\",\"key2\":123},\"table-2\":{\"key1\":\"another "
       "string\",\"key2\":456}}");
    OK("[dog.\"tater.man\"]\ntype.name = \"pug\"\n",
       "{\"dog\":{\"tater.man\":{\"type\":{\"name\":\"pug\"}}}}");
    OK("[a.b.c]\n[ d.e.f ]\n[ g .  h  . i ]\n[ j . \"ʞ\" . 'l' ]\n",
       "{\"a\":{\"b\":{\"c\":{}}},\"d\":{\"e\":{\"f\":{}}},\"g\":{\"h\":{\"i\":{}}},\"j\":{\"ʞ\":{"
       "\"l\":{}}}}");
    // Super-tables may be defined after their sub-tables, once.
    OK("[x.y.z.w]\n[x]\na = 1\n", "{\"x\":{\"a\":1,\"y\":{\"z\":{\"w\":{}}}}}");
    OK("[fruit]\napple.color = \"red\"\napple.taste.sweet = true\n[fruit.apple.texture]\nsmooth = "
       "true\n",
       "{\"fruit\":{\"apple\":{\"color\":\"red\",\"taste\":{\"sweet\":true},\"texture\":{"
       "\"smooth\":true}}}}");
    OK("[a.b.c]\nz = 9\n[a]\nb.d = 1\n", "{\"a\":{\"b\":{\"c\":{\"z\":9},\"d\":1}}}");
    OK("[[products]]\nname = \"Hammer\"\nsku = 738594937\n\n[[products]]  # empty table within the "
       "array\n\n"
       "[[products]]\nname = \"Nail\"\nsku = 284758393\n\ncolor = \"gray\"\n",
       "{\"products\":[{\"name\":\"Hammer\",\"sku\":738594937},{},{\"color\":\"gray\",\"name\":"
       "\"Nail\","
       "\"sku\":284758393}]}");
    OK("[[fruits]]\nname = \"apple\"\n\n[fruits.physical]  # subtable\ncolor = \"red\"\nshape = "
       "\"round\"\n\n"
       "[[fruits.varieties]]  # nested array of tables\nname = \"red delicious\"\n\n"
       "[[fruits.varieties]]\nname = \"granny smith\"\n\n\n[[fruits]]\nname = \"banana\"\n\n"
       "[[fruits.varieties]]\nname = \"plantain\"\n",
       "{\"fruits\":[{\"name\":\"apple\",\"physical\":{\"color\":\"red\",\"shape\":\"round\"},"
       "\"varieties\":[{\"name\":\"red delicious\"},{\"name\":\"granny smith\"}]},"
       "{\"name\":\"banana\",\"varieties\":[{\"name\":\"plantain\"}]}]}");
    OK("[[a]]\n[a.b]\nx = 1\n[[a]]\n[a.b]\nx = 2\n",
       "{\"a\":[{\"b\":{\"x\":1}},{\"b\":{\"x\":2}}]}");
    OK("[[ a . b ]]\nc = 1\n[[a.b]]\n", "{\"a\":{\"b\":[{\"c\":1},{}]}}");
    OK("[a.b]\n[[a.c]]\n[a]\nd = 1\n", "{\"a\":{\"b\":{},\"c\":[{}],\"d\":1}}");
    OK("points = [ { x = 1, y = 2, z = 3 },\n           { x = 7, y = 8, z = 9 } ]\n",
       "{\"points\":[{\"x\":1,\"y\":2,\"z\":3},{\"x\":7,\"y\":8,\"z\":9}]}");
}

static void test_redefinitions(void) {
    BAD("a = 1\na = 2", "2:1: duplicate key 'a'");
    BAD("\"a\" = 1\n'a' = 2", "2:1: duplicate key 'a'");
    BAD("spelling = \"favorite\"\n\"spelling\" = \"favourite\"", "2:1: duplicate key 'spelling'");
    BAD("[a]\nb = 1\n\n[a]\nc = 2", "4:1: table 'a' is already defined");
    BAD("[a]\nb = 1\n[a.b]", "3:1: key 'b' is already defined");
    BAD("a.b = 1\n[a]", "2:1: table 'a' is already defined");
    BAD("[fruit]\napple.color = \"red\"\n[fruit.apple]", "3:1: table 'apple' is already defined");
    BAD("[fruit]\napple.taste.sweet = true\n[fruit.apple.taste]",
        "3:1: table 'taste' is already defined");
    BAD("[a.b.c]\nz = 9\n[a]\nb.c.t = 1", "4:3: table 'c' is already defined");
    BAD("[a.b]\nc = 1\n[a]\nb = 2", "4:1: duplicate key 'b'");
    BAD("a.b = 1\na.b.c = 2", "2:3: key 'b' is already an integer, not a table");
    BAD("a = 1\n[a.b]", "2:2: key 'a' is already an integer, not a table");
    BAD("fruits = []\n[[fruits]]", "2:1: cannot append to 'fruits': it is already a static array");
    BAD("a = [{b = 1}]\n[a.c]", "2:2: cannot add tables to static array 'a'");
    BAD("[[a]]\n[a]", "2:1: key 'a' is already defined");
    BAD("[a]\n[[a]]", "2:1: cannot append to 'a': it is already a table");
    BAD("[[fruits]]\nname = \"apple\"\n[[fruits.varieties]]\nname = \"red delicious\"\n"
        "[fruits.varieties]\nname = \"granny smith\"",
        "5:1: key 'varieties' is already defined");
    BAD("[[fruits]]\n[fruits.physical]\ncolor = \"red\"\n[[fruits.physical]]",
        "4:1: cannot append to 'physical': it is already a table");
}

static void test_syntax_errors(void) {
    BAD("a", "1:2: expected '=' after a key, found end of file");
    BAD("a =", "1:4: expected a value, found end of file");
    BAD("= 1", "1:1: expected a key, found '='");
    BAD("a = 1 b = 2", "1:7: expected the end of the line, found 'b'");
    BAD("a.b. = 1", "1:6: expected a key, found '='");
    BAD("a = \"x", "1:5: unterminated string");
    BAD("a = \"x\ny\"", "1:5: unterminated string (a newline before the closing quote)");
    BAD("a = 'x\ny'", "1:5: unterminated string (a newline before the closing quote)");
    BAD("a = \"\"\"x", "1:5: unterminated string");
    BAD("a = '''x''", "1:5: unterminated string");
    BAD("a = \"\"\"x\"\"\"\"\"\"", "1:9: too many quotes closing a string");
    BAD("a = '''x''''''", "1:9: too many quotes closing a string");
    BAD("a = \"\\x41\"", "1:6: invalid escape: backslash and 'x'");
    BAD("a = \"\\e\"", "1:6: invalid escape: backslash and 'e'");
    BAD("a = \"\\ \"", "1:6: invalid escape: backslash and U+0020");
    BAD("a = \"\"\"\\ x\"\"\"", "1:8: a backslash followed by spaces must end the line");
    BAD("a = \"\\u12\"", "1:6: \\u needs 4 hex digits");
    BAD("a = \"\\U0001F60\"", "1:6: \\U needs 8 hex digits");
    BAD("a = \"\\uD800\"", "1:6: escape names U+D800, which is not a Unicode scalar value");
    BAD("a = \"\\uDFFF\"", "1:6: escape names U+DFFF");
    BAD("a = \"\\U00110000\"", "1:6: escape names U+110000");
    BAD("a = \"\\u0000\"", "1:6: U+0000 is not supported (the JSON reader rejects it too)");
    BAD("\"\\u0000\" = 1", "1:2: U+0000 is not supported");
    BAD("a = 01", "1:5: leading zeros are not allowed in '01'");
    BAD("a = -01.5", "1:5: leading zeros are not allowed in '-01.5'");
    BAD("a = +0x1", "1:5: a sign is not allowed on hex, octal or binary integers");
    BAD("a = 0X1", "1:5: invalid number '0X1'");
    BAD("a = 0x", "1:5: invalid hex integer '0x'");
    BAD("a = 0o8", "1:5: invalid octal integer '0o8'");
    BAD("a = 0b2", "1:5: invalid binary integer '0b2'");
    BAD("a = 0x_1", "1:5: invalid hex integer '0x_1'");
    BAD("a = 1__0", "1:5: invalid number '1__0'");
    BAD("a = _1", "1:5: expected a value, found '_'");
    BAD("a = 1_", "1:5: invalid number '1_'");
    BAD("a = 1.", "1:5: a decimal point needs digits on both sides in '1.'");
    BAD("a = .5", "1:5: expected a value, found '.'");
    BAD("a = 1.e5", "1:5: a decimal point needs digits on both sides in '1.e5'");
    BAD("a = 1e", "1:5: an exponent needs digits in '1e'");
    BAD("a = 1e_5", "1:5: an exponent needs digits in '1e_5'");
    BAD("a = 1.5_", "1:5: a decimal point needs digits on both sides");
    BAD("a = 1.2.3", "1:5: invalid number '1.2.3'");
    BAD("a = ++1", "1:5: invalid number '++1'");
    BAD("a = truee", "1:5: expected a value, found 't'");
    BAD("a = TRUE", "1:5: expected a value, found 'T'");
    BAD("[a", "1:3: expected ']' to close a table header, found end of file");
    BAD("[[a]", "1:4: expected ']]' to close a table header, found ']'");
    BAD("[[a] ]", "1:4: expected ']]' to close a table header, found ']'");
    BAD("[]", "1:2: expected a key, found ']'");
    BAD("[a] b = 1", "1:5: expected the end of the line, found 'b'");
    BAD("[a\nb]", "1:3: expected ']' to close a table header, found end of line");
    BAD("a = 1\n\n  b\xc3\xa9 = 2", "3:4: expected '=' after a key, found a non-ASCII character");
    BAD("x = \"é\" y", "1:9: expected the end of the line, found 'y'");
}

static void test_bytes_and_dates(void) {
    BADN("a = \"\xff\"", "1:6: invalid UTF-8");
    BADN("# \xed\xa0\x80 surrogate", "1:3: invalid UTF-8");
    BADN("a = '\xc0\xaf'", "1:6: invalid UTF-8");
    BADN("a = \"x\x01\"", "1:7: control character U+0001 in a string");
    BADN("a = \"\x7f\"", "1:6: control character U+007F in a string");
    BADN("a = '''\x00'''", "1:8: control character U+0000 in a string");
    BADN("a = 1 # bad \x1f comment", "1:13: control character U+001F in a comment");
    BADN("a = 1 # \x7f", "1:9: control character U+007F in a comment");
    BADN("a = 1\rb = 2", "1:6: a carriage return not followed by a newline");
    BADN("a = \"\"\"x\ry\"\"\"", "1:9: a carriage return not followed by a newline");
    BADN("a = 1\r", "1:6: a carriage return not followed by a newline");
    BADN("a = 1\x00", "1:6: expected the end of the line, found U+0000");
    BADN("\x00", "1:1: expected a key, found U+0000");
    BAD("odt = 1979-05-27T07:32:00Z", "1:7: dates are not supported");
    BAD("odt = 1979-05-27T00:32:00.999999-07:00", "1:7: dates are not supported");
    BAD("ldt = 1979-05-27 07:32:00", "1:7: dates are not supported");
    BAD("ld = 1979-05-27", "1:6: dates are not supported");
    BAD("lt = 07:32:00", "1:6: dates are not supported");
    BAD("a = [1, 2]\nb = [\"x\", 00:32:00.999999]", "2:11: dates are not supported");
}

static void test_limits(void) {
    // 64 levels of JSON nesting are allowed (the root object is level 1), 65 are not.
    char doc[512];
    size_t n = 0;
    n += (size_t)snprintf(doc + n, sizeof doc - n, "a = ");
    for (int i = 0; i < 63; i++)
        doc[n++] = '[';
    for (int i = 0; i < 63; i++)
        doc[n++] = ']';
    doc[n] = 0;
    char *got = conv(doc, n);
    CHECK(got && strncmp(got, "{\"a\":[[[[", 9) == 0);
    free(got);
    n = 0;
    n += (size_t)snprintf(doc + n, sizeof doc - n, "a = ");
    for (int i = 0; i < 64; i++)
        doc[n++] = '[';
    for (int i = 0; i < 64; i++)
        doc[n++] = ']';
    doc[n] = 0;
    check_conv(__LINE__, doc, n, "ERR t.toml:1:68: nesting deeper than 64 levels", false);
    // Dotted keys and headers count too: 64 parts make 63 tables under the root.
    n = 0;
    for (int i = 0; i < 64; i++)
        n += (size_t)snprintf(doc + n, sizeof doc - n, "%sk", i ? "." : "");
    n += (size_t)snprintf(doc + n, sizeof doc - n, " = 1");
    got = conv(doc, n);
    CHECK(got && strncmp(got, "{\"k\":{\"k\":", 10) == 0 && strstr(got, "\"k\":1}"));
    free(got);
    n -= 1;
    n += (size_t)snprintf(doc + n, sizeof doc - n, "[]");
    check_conv(__LINE__, doc, n, "ERR t.toml:1:131: nesting deeper than 64 levels", false);
    n = 0;
    n += (size_t)snprintf(doc + n, sizeof doc - n, "[");
    for (int i = 0; i < 64; i++)
        n += (size_t)snprintf(doc + n, sizeof doc - n, "%sk", i ? "." : "");
    n += (size_t)snprintf(doc + n, sizeof doc - n, "]");
    check_conv(__LINE__, doc, n, "ERR t.toml:1:128: nesting deeper than 64 levels", false);
    n = 0;
    for (int i = 0; i < 65; i++)
        n += (size_t)snprintf(doc + n, sizeof doc - n, "%sk", i ? "." : "");
    n += (size_t)snprintf(doc + n, sizeof doc - n, " = 1");
    check_conv(__LINE__, doc, n, "ERR t.toml:1:129: a key with more than 64 parts", false);
    // [[a]] nests two levels (array, then table).
    n = 0;
    n += (size_t)snprintf(doc + n, sizeof doc - n, "[[a]]\nb = ");
    for (int i = 0; i < 62; i++)
        n += (size_t)snprintf(doc + n, sizeof doc - n, "{c=");
    check_conv(__LINE__, doc, n, "ERR t.toml:2:188: nesting deeper than 64 levels", false);

    size_t big = ((size_t)16 << 20) + 1;
    char *huge = malloc(big);
    CHECK(huge != NULL);
    if (!huge) return;
    memset(huge, '\n', big);
    anneal_err err = {0};
    CHECK(anneal_toml_parse(huge, big, "big.toml", &err) == NULL);
    CHECK_EQ(err.status, ANNEAL_ERR_LIMIT);
    CHECK_STR(err.msg, "big.toml: larger than the 16 MiB a TOML file may have");
    json_t *v = anneal_toml_parse(huge, big - 1, "big.toml", NULL);
    CHECK(json_is_object(v) && json_object_size(v) == 0);
    json_decref(v);
    free(huge);
}

static void test_statuses_and_args(void) {
    anneal_err err = {0};
    json_t *v = anneal_toml_parse(NULL, 0, NULL, &err);
    CHECK(json_is_object(v) && json_object_size(v) == 0);
    json_decref(v);
    CHECK(anneal_toml_parse("a = 1\na = 2", 11, NULL, &err) == NULL);
    CHECK_STR(err.msg, "toml:2:1: duplicate key 'a'");
    CHECK_EQ(err.status, ANNEAL_ERR_FORMAT);
    anneal_err_clear(&err);
    CHECK(anneal_toml_parse("d = 2024-01-01", 14, "x", &err) == NULL);
    CHECK_EQ(err.status, ANNEAL_ERR_UNSUPPORTED);
    anneal_err_clear(&err);
    CHECK(anneal_toml_parse("i = 99999999999999999999", 24, "x", &err) == NULL);
    CHECK_EQ(err.status, ANNEAL_ERR_RANGE);
    // Only `len` bytes are read: the text need not be NUL-terminated.
    v = anneal_toml_parse("a = 12345", 6, "x", NULL);
    CHECK(v && json_integer_value(json_object_get(v, "a")) == 12);
    json_decref(v);
    // Columns count characters: 'é' is one column.
    anneal_err_clear(&err);
    CHECK(anneal_toml_parse("\"é\" = 1 x", 11, "x", &err) == NULL);
    CHECK_STR(err.msg, "x:1:9: expected the end of the line, found 'x'");
}

// Cases in the manner of the toml-test suite (valid ones as their JSON, invalid ones must fail).
static void test_toml_test_selection(void) {
    OK("# This is a TOML document.\n\ntitle = \"TOML Example\"\n\n[owner]\nname = \"Tom "
       "Preston-Werner\"\n\n"
       "[database]\nserver = \"192.168.1.1\"\nports = [ 8000, 8001, 8002 ]\nconnection_max = 5000\n"
       "enabled = true\n\n[servers]\n\n  # Indentation (tabs and/or spaces) is allowed but not "
       "required\n"
       "  [servers.alpha]\n  ip = \"10.0.0.1\"\n  dc = \"eqdc10\"\n\n  [servers.beta]\n  ip = "
       "\"10.0.0.2\"\n"
       "  dc = \"eqdc10\"\n\n[clients]\ndata = [ [\"gamma\", \"delta\"], [1, 2] ]\n\n"
       "# Line breaks are OK when inside arrays\nhosts = [\n  \"alpha\",\n  \"omega\"\n]\n",
       "{\"clients\":{\"data\":[[\"gamma\",\"delta\"],[1,2]],\"hosts\":[\"alpha\",\"omega\"]},"
       "\"database\":{\"connection_max\":5000,\"enabled\":true,\"ports\":[8000,8001,8002],"
       "\"server\":\"192.168.1.1\"},\"owner\":{\"name\":\"Tom Preston-Werner\"},"
       "\"servers\":{\"alpha\":{\"dc\":\"eqdc10\",\"ip\":\"10.0.0.1\"},\"beta\":{\"dc\":\"eqdc10\","
       "\"ip\":\"10.0.0.2\"}},\"title\":\"TOML Example\"}");
    OK("apple.type = \"fruit\"\norange.type = \"fruit\"\napple.skin = \"thin\"\norange.skin = "
       "\"thick\"\n",
       "{\"apple\":{\"skin\":\"thin\",\"type\":\"fruit\"},\"orange\":{\"skin\":\"thick\",\"type\":"
       "\"fruit\"}}");
    OK("a = [\n  1,\n  2,\n]\nb = [ \"x\" , # comment\n  [ ], ]\n",
       "{\"a\":[1,2],\"b\":[\"x\",[]]}");
    OK("\"\" = \"blank\"\n", "{\"\":\"blank\"}");
    OK("'' = \"blank\"\n", "{\"\":\"blank\"}");
    OK("[\"\"]\nx = 1\n", "{\"\":{\"x\":1}}");
    OK("a = \"\"\"\n\n\"\"\"\nb = '''\n'''\n", "{\"a\":\"\\n\",\"b\":\"\"}");
    OK("ws = \" \\t \"\nkey = \"# not a comment\"\n",
       "{\"key\":\"# not a comment\",\"ws\":\" \\t \"}");
    OK("[tbl]\n[tbl.inner]\n[[arr]]\n[[arr]]\nx = [{}]\n",
       "{\"arr\":[{},{\"x\":[{}]}],\"tbl\":{\"inner\":{}}}");
    OK("true = 1\nfalse = 2\ninf = 3\nnan = 4\n", "{\"false\":2,\"inf\":3,\"nan\":4,\"true\":1}");
    OK("a = {a = {a = {}}}\n", "{\"a\":{\"a\":{\"a\":{}}}}");
    OK("[a]\nb.c = 1\nb.d = 2\n[a.b.e]\nf = 3\n",
       "{\"a\":{\"b\":{\"c\":1,\"d\":2,\"e\":{\"f\":3}}}}");

    static const char *const invalid[] = {
        "a = 1 = 2",
        "a = \"\"\"\"\"\"\"\"\"\"",
        "a = [1,2",
        "a = {",
        "a = { b = 1 c = 2 }",
        "a = {b=1}\nb=2 x",
        "a = 1.0e",
        "a = 1e2.3",
        "a = 0.",
        "a = -0x1",
        "a = 0o",
        "a = 1__2",
        "a = 01:02",
        "key = # no value",
        "key\n= 1",
        "[a]b=1",
        "[a.]",
        "[.a]",
        "[a..b]",
        "[ [a] ]",
        "a = 'no\nnewline'",
        "a = \"\\uzzzz\"",
        "a = \"\\U1234\"",
        "a = 1 2",
        "[[]]",
        "a.b=1\na={}",
        "a = []]",
        "a = [1,]]",
        "a = \"\\\n\"",
        "a = '''x'''y",
        "'a'b = 1",
        "a = +",
        "a = -",
        "a = 1e+",
        "a = 0b",
        "a = 0x1G",
        "a = 1.2e3.4",
        "[t]\n[[t.x]]\n[t.x]",
    };
    for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++) {
        anneal_err err = {0};
        json_t *v = anneal_toml_parse(invalid[i], strlen(invalid[i]), "t.toml", &err);
        if (v) fprintf(stderr, "accepted invalid case %zu: %s\n", i, invalid[i]);
        CHECK(v == NULL);
        CHECK(strncmp(err.msg, "t.toml:", 7) == 0);
        json_decref(v);
    }
}

// A document with bytes flipped must never crash; what it accepts must dump as JSON.
static void test_mutations(void) {
    static const char base[] = "title = \"x\\u00e9\" # c\n[a.b]\nc = [1, 2.5, 'x', {d = "
                               "true}]\n[[e]]\nf = \"\"\"\nm\\\n  l\"\"\"\n"
                               "[[e]]\ng = 0x1F\nh.i = -3e2\n";
    const char alphabet[] = "[]{}=.,\"'\\\n\r#0x_e+-:tf \t\xc3\xa9\x00\xff";
    char buf[sizeof base];
    uint64_t rng = 0x1234567;
    int accepted = 0;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(buf, base, sizeof base);
        int flips = 1 + iter % 4;
        for (int f = 0; f < flips; f++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t pos = (size_t)(rng >> 33) % (sizeof base - 1);
            buf[pos] = alphabet[(rng >> 20) % (sizeof alphabet - 1)];
        }
        json_t *v = anneal_toml_parse(buf, sizeof base - 1, "m.toml", NULL);
        if (v) {
            char *s = json_dumps(v, JSON_COMPACT);
            CHECK(s != NULL);
            free(s);
            json_decref(v);
            accepted++;
        }
    }
    CHECK(accepted > 100);
}

// The pipeline example of docs/data.md in both forms gives equal values, keys in the same order.
static void test_pipeline_equals_json(void) {
    static const char json[] =
        "{\"inputs\": [\"raw/\"], \"output\": \"datasets/v1\", \"steps\": ["
        "{\"step\": \"clean\", \"quality\": {\"gopher_min_words\": 20}},"
        "{\"step\": \"pii\", \"pii\": {\"phone\": false}},"
        "{\"step\": \"dedup\", \"dedup\": {\"bands\": 20, \"rows\": 5}},"
        "{\"step\": \"audit\"},"
        "{\"step\": \"shard\", \"tokenizer\": \"vocab.gguf\", \"val_fraction\": 0.05}]}";
    static const char toml[] =
        "inputs = [\"raw/\"]\noutput = \"datasets/v1\"\n\n"
        "[[steps]]\nstep = \"clean\"\nquality.gopher_min_words = 20\n\n"
        "[[steps]]\nstep = \"pii\"\npii = { phone = false }\n\n"
        "[[steps]]\nstep = \"dedup\"\n[steps.dedup]\nbands = 20\nrows = 5\n\n"
        "[[steps]]\nstep = \"audit\"\n\n"
        "[[steps]]\nstep = \"shard\"\ntokenizer = \"vocab.gguf\"\nval_fraction = 0.05\n";
    json_t *a = anneal_json_parse(json, sizeof json - 1, "p.json", NULL);
    json_t *b = anneal_toml_parse(toml, sizeof toml - 1, "p.toml", NULL);
    CHECK(a && b && json_equal(a, b));
    char *sa = json_dumps(a, JSON_COMPACT), *sb = json_dumps(b, JSON_COMPACT);
    CHECK_STR(sa, sb);
    free(sa);
    free(sb);
    json_decref(a);
    json_decref(b);
}

int main(void) {
    RUN(test_comments_and_keys);
    RUN(test_strings);
    RUN(test_numbers);
    RUN(test_arrays_and_inline_tables);
    RUN(test_tables);
    RUN(test_redefinitions);
    RUN(test_syntax_errors);
    RUN(test_bytes_and_dates);
    RUN(test_limits);
    RUN(test_statuses_and_args);
    RUN(test_toml_test_selection);
    RUN(test_mutations);
    RUN(test_pipeline_equals_json);
    return TEST_EXIT();
}
