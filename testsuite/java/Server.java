import com.sun.net.httpserver.*;
import java.net.InetSocketAddress;
import java.util.concurrent.ConcurrentHashMap;
import java.nio.charset.StandardCharsets;

public class Server {
    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(args[0]);
        ConcurrentHashMap<String, String> map = new ConcurrentHashMap<>();
        HttpServer s = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 50);
        s.createContext("/", ex -> {
            String key = ex.getRequestURI().getPath();
            byte[] out;
            if (ex.getRequestMethod().equals("PUT")) {
                String v = new String(ex.getRequestBody().readAllBytes(), StandardCharsets.UTF_8);
                map.put(key, v);
                out = "OK\n".getBytes();
            } else {
                String v = map.get(key);
                out = (v == null ? "NONE\n" : v + "\n").getBytes();
            }
            ex.sendResponseHeaders(200, out.length);
            ex.getResponseBody().write(out);
            ex.close();
        });
        s.start();
        System.out.println("listening on " + port);
    }
}
