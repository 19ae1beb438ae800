// What DBeaver and other JDBC tools do on connecting, through the
// PostgreSQL JDBC driver: a prepared statement with a parameter, then the
// driver's metadata calls (tables, columns, schemas). Prints one line per
// answer; run by tests/api/jdbc.rs as `java -cp <driver jar> Probe.java
// <port> <key>`.
import java.sql.*;

public class Probe {
  public static void main(String[] args) throws Exception {
    String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/wattline";
    try (Connection c = DriverManager.getConnection(url, "dbeaver", args[1])) {
      System.out.println("version " + c.getMetaData().getDatabaseProductVersion());
      String sql = "SELECT sensor_id, count(*) FROM readings WHERE value_kwh > ? GROUP BY sensor_id ORDER BY sensor_id";
      try (PreparedStatement p = c.prepareStatement(sql)) {
        p.setDouble(1, 0.0);
        try (ResultSet r = p.executeQuery()) {
          while (r.next()) System.out.println("rows " + r.getString(1) + " " + r.getLong(2));
        }
      }
      DatabaseMetaData md = c.getMetaData();
      try (ResultSet r = md.getTables(null, null, "%", new String[] {"TABLE"})) {
        while (r.next()) System.out.println("table " + r.getString("TABLE_NAME"));
      }
      try (ResultSet r = md.getColumns(null, null, "readings", "%")) {
        while (r.next()) {
          System.out.println("column " + r.getString("COLUMN_NAME") + " " + r.getString("TYPE_NAME")
              + " " + r.getInt("DATA_TYPE"));
        }
      }
      try (ResultSet r = md.getSchemas()) {
        while (r.next()) System.out.println("schema " + r.getString(1));
      }
    }
  }
}
